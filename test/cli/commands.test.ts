import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.js";

const ORDER_TOML = `
[[entities]]
name = "Order"
[entities.fields]
id = "ID"
customer_email = "String"
total = "Float"
status = "String"
is_priority = "Boolean?"

[[observers]]
name = "notify_shipping_update"
entity = "Order"
event = "UPDATE"
condition = "(status == 'shipped' && total > 500) || is_priority"

[[observers.actions]]
url = "https://shipping.example.com/tracking"
body = { order_id = "{{ id }}" }

[webhooks.signing]
secret = "\${WEBHOOK_SECRET}"
`;

describe("command line", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "fraiseql-cli-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function write(name: string, text: string): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  }

  it("check accepts a valid config and summarises it", async () => {
    const path = await write("ok.toml", ORDER_TOML);
    const r = runCli(["check", "--config", path], { env: { WEBHOOK_SECRET: "s3cret-value" } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ok: .*ok\.toml: 1 entities, 1 observers, 1 actions/);
  });

  it("check names the missing environment variable, file and line, without a stack", async () => {
    const path = await write("env.toml", ORDER_TOML);
    const r = runCli(["check", "--config", path], { env: { WEBHOOK_SECRET: undefined } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /WEBHOOK_SECRET/);
    assert.match(r.stderr, /env\.toml:\d+/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  });

  it("check points at a TOML syntax error by line and column", async () => {
    const path = await write("syntax.toml", `[webhooks]\ntimeout = "30s\n`);
    const r = runCli(["check", "--config", path]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /syntax\.toml:2:\d+/);
    assert.match(r.stderr, /FQL_CONFIG_SYNTAX/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });

  it("check rejects an unknown key, a bad duration and an unknown field in a condition", async () => {
    const cases: [string, RegExp][] = [
      [`[webhooks]\ntimout = "30s"\n`, /timout.*(did you mean|timeout)/s],
      [`[webhooks.retry]\ninitial_delay = "100 parsecs"\n`, /webhooks\.retry\.initial_delay/],
      [ORDER_TOML.replace('is_priority"', 'is_prority"'), /is_prority[\s\S]*is_priority/],
    ];
    for (const [i, [text, pattern]] of cases.entries()) {
      const path = await write(`bad${i}.toml`, text);
      const r = runCli(["check", "--config", path], { env: { WEBHOOK_SECRET: "s3cret-value" } });
      assert.equal(r.status, 1, `case ${i}: ${r.stdout}`);
      assert.match(r.stderr, pattern, `case ${i}`);
      assert.match(r.stderr, new RegExp(`bad${i}\\.toml:\\d+`), `case ${i} names file and line`);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    }
  });

  it("a missing --config file is a clear error", () => {
    const r = runCli(["check", "--config", join(dir, "nope.toml")]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /nope\.toml/);
    assert.match(r.stderr, /FQL_CONFIG_NOT_FOUND/);
  });

  it("explain prints SQL for an observer's condition", async () => {
    const path = await write("explain.toml", ORDER_TOML);
    const r = runCli(["explain", "notify_shipping_update", "--config", path], {
      env: { WEBHOOK_SECRET: "s3cret-value" },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^SELECT \* FROM "public"\."orders" WHERE .+;$/m);
    const unknown = runCli(["explain", "nobody", "--config", path], {
      env: { WEBHOOK_SECRET: "s3cret-value" },
    });
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /notify_shipping_update/);
  });

  it("an unknown command exits 2 with usage help", () => {
    const r = runCli(["frobnicate"]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
  });

  it("init writes a starter config that check accepts, and refuses to overwrite it", async () => {
    const target = join(dir, "project");
    const r = runCli(["init", target]);
    assert.equal(r.status, 0, r.stderr);
    const toml = await readFile(join(target, "fraiseql.toml"), "utf8");
    assert.match(toml, /\[webhooks\.signing\]/);
    assert.match(toml, /^include = \["\.\/schema\.ts"\]/m, "the TypeScript example is included");
    // The directory has no node_modules: schema.ts's `import ... from "fraiseql"` is the CLI's own package.
    const check = runCli(["check", "--config", join(target, "fraiseql.toml")], {
      cwd: target,
      env: { WEBHOOK_SECRET: "s3cret-value" },
    });
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /ok: /);
    // A command that opens the app loads the module too, with undici and pg already loaded.
    const migrate = runCli(["migrate"], { cwd: target, env: { WEBHOOK_SECRET: "s3cret-value" } });
    assert.equal(migrate.status, 0, migrate.stderr);
    assert.match(migrate.stdout, /applied 001_init/);
    const again = runCli(["init", target]);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /exists already/);
  });

  it("demo --once runs the whole pipeline on PGlite and exits 0 once the webhook verified", () => {
    const r = runCli(["demo", "--once"], { cwd: dir });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /signature: verified/);
    assert.match(r.stdout, /"total":99\.99/);
  });
});
