import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  defineConfig,
  defineEntity,
  isDefinition,
  observer,
  webhook,
  withSource,
} from "../../src/config/define.js";
import { loadConfig, parseConfig } from "../../src/config/load.js";
import { type ErrorCode, FraiseqlError } from "../../src/errors.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const FIXTURES = join(HERE, "fixtures");
const DEFINE_URL = pathToFileURL(join(HERE, "../../src/config/define.ts")).href;
const ENV = { WEBHOOK_API_KEY: "api-key-1", WEBHOOK_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString("base64") };

async function rejection(promise: Promise<unknown>): Promise<FraiseqlError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof FraiseqlError) return err;
    throw err;
  }
  assert.fail("expected an error");
}

function thrown(fn: () => unknown): FraiseqlError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FraiseqlError) return err;
    throw err;
  }
  assert.fail("expected an error");
}

const projects: string[] = [];
after(() => {
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "fraiseql-config-"));
  projects.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const Order = defineEntity({ name: "Order", fields: { total: "Float", status: "String" } });

describe("define functions", () => {
  it("return frozen, tagged copies of their input", () => {
    const hook = webhook({ url: "https://x.example.com" });
    assert.equal(hook.kind, "webhook");
    assert.equal(hook.url, "https://x.example.com");
    assert.ok(Object.isFrozen(hook));
    assert.ok(isDefinition(hook, "webhook"));
    assert.ok(!isDefinition(hook, "observer"));
    assert.ok(
      !isDefinition({ kind: "webhook", url: "https://x.example.com" }),
      "a look-alike plain object is not a definition",
    );
    assert.equal(defineConfig({}).kind, "config");
  });
});

describe("TypeScript definitions resolve through the same schema", () => {
  it("a module loaded through include gives the same config as the equivalent TOML", async () => {
    const fromToml = await loadConfig({ path: join(FIXTURES, "seed", "observers.toml"), env: ENV });
    const fromTs = await loadConfig({ path: join(FIXTURES, "ts", "fraiseql.toml"), env: ENV });
    assert.deepEqual({ ...fromTs, file: undefined }, { ...fromToml, file: undefined });
  });

  it("accept the entity value itself in an observer", () => {
    const config = parseConfig("", {
      env: {},
      extra: {
        entities: [Order],
        observers: [
          observer({
            name: "o",
            entity: Order,
            event: "insert",
            actions: [webhook({ url: "https://x.example.com" })],
          }),
        ],
      },
    });
    assert.equal(config.observers[0]!.entity, "Order");
    assert.equal(config.observers[0]!.event, "INSERT");
  });

  const cases: {
    name: string;
    observer: unknown;
    code: ErrorCode;
    key: string;
    says?: string;
  }[] = [
    {
      name: "a bad url",
      observer: observer({
        name: "on_order_created",
        entity: "Order",
        event: "INSERT",
        actions: [webhook({ url: "api.example.com/notifications" })],
      }),
      code: "FQL_CONFIG_INVALID",
      key: "observers[on_order_created].actions[0].url",
    },
    {
      name: "an unknown key",
      observer: observer({
        name: "on_order_created",
        entity: "Order",
        event: "INSERT",
        retry: { maxAttempts: 5 } as never,
        actions: [webhook({ url: "https://x.example.com" })],
      }),
      code: "FQL_CONFIG_INVALID",
      key: "observers[on_order_created].retry.maxAttempts",
      says: 'did you mean "max_attempts"?',
    },
    {
      name: "an unknown field in a condition",
      observer: observer({
        name: "on_order_created",
        entity: "Order",
        event: "UPDATE",
        actions: [webhook({ url: "https://x.example.com", condition: "totl > 5" })],
      }),
      code: "FQL_CONDITION_UNKNOWN_FIELD",
      key: "observers[on_order_created].actions[0].condition",
    },
    {
      name: "a definition of the wrong kind",
      observer: observer({
        name: "on_order_created",
        entity: "Order",
        event: "INSERT",
        actions: [Order as never],
      }),
      code: "FQL_CONFIG_INVALID",
      key: "observers[on_order_created].actions[0]",
      says: "expected webhook(...), got entity(...)",
    },
    {
      name: "a bare number for a duration",
      observer: observer({
        name: "on_order_created",
        entity: "Order",
        event: "INSERT",
        actions: [webhook({ url: "https://x.example.com", timeout: 5000 as never })],
      }),
      code: "FQL_CONFIG_INVALID",
      key: "observers[on_order_created].actions[0].timeout",
    },
  ];
  for (const c of cases) {
    it(`report ${c.name} with the key path and the module file`, () => {
      const err = thrown(() =>
        parseConfig("", {
          env: {},
          extra: { entities: [Order], observers: [withSource(c.observer as never, "src/hooks.ts")] },
        }),
      );
      assert.equal(err.code, c.code, err.describe());
      assert.equal(err.location.key, c.key);
      assert.equal(err.location.file, "src/hooks.ts");
      assert.equal(err.location.line, undefined);
      if (c.says !== undefined) assert.ok(`${err.message} ${err.hint}`.includes(c.says), err.describe());
    });
  }

  it("refuse an observer name used in both the TOML file and a module", () => {
    const toml = `[[entities]]\nname = "Order"\n[[observers]]\nname = "o"\nentity = "Order"\nevent = "INSERT"\n[[observers.actions]]\nurl = "https://x.example.com"\n`;
    const dup = withSource(
      observer({
        name: "o",
        entity: "Order",
        event: "DELETE",
        actions: [webhook({ url: "https://y.example.com" })],
      }),
      "hooks.ts",
    );
    const err = thrown(() =>
      parseConfig(toml, { file: "fraiseql.toml", env: {}, extra: { observers: [dup] } }),
    );
    assert.equal(err.location.key, "observers[o].name");
    assert.equal(err.location.file, "hooks.ts");
    assert.ok(err.message.includes("line 3"), err.message);
  });
});

describe("loadConfig", () => {
  it("gives every default when there is no fraiseql.toml and no path", async () => {
    const config = await loadConfig({ cwd: project({}), env: {} });
    assert.equal(config.file, undefined);
    assert.equal(config.server.port, 4000);
  });

  it("finds fraiseql.toml in the working directory", async () => {
    const dir = project({ "fraiseql.toml": "[server]\nport = 4100\n" });
    const config = await loadConfig({ cwd: dir, env: {} });
    assert.equal(config.server.port, 4100);
    assert.equal(config.file, join(dir, "fraiseql.toml"));
  });

  it("refuses a missing explicit path", async () => {
    const err = await rejection(loadConfig({ cwd: project({}), path: "nope.toml", env: {} }));
    assert.equal(err.code, "FQL_CONFIG_NOT_FOUND");
    assert.equal(err.location.file, "nope.toml");
  });

  it("refuses a missing include, at its line", async () => {
    const dir = project({
      "fraiseql.toml": '# Modules\n\ninclude = ["./missing.ts"]\n[server]\nport = 4100\n',
    });
    const err = await rejection(loadConfig({ cwd: dir, env: {} }));
    assert.equal(err.code, "FQL_CONFIG_NOT_FOUND");
    assert.deepEqual(
      [err.location.file, err.location.key, err.location.line],
      ["fraiseql.toml", "include[0]", 3],
    );
  });

  it("imports TypeScript and JavaScript modules, with arrays of definitions and a defineConfig default export", async () => {
    const dir = project({
      "fraiseql.toml": 'include = ["./entities.mjs", "./hooks.ts"]\n[server]\nport = 4200\n',
      "entities.mjs": `import { defineEntity } from ${JSON.stringify(DEFINE_URL)};\nexport const all = [defineEntity({ name: "Order", fields: { total: "Float" } })];\n`,
      "hooks.ts": `import { defineConfig, observer, webhook } from ${JSON.stringify(DEFINE_URL)};
const total: string = "{{ total }}";
export const onCreated = observer({ name: "on_created", entity: "Order", event: "INSERT", actions: [webhook({ url: "https://x.example.com", body: { total } })] });
export default defineConfig({ webhooks: { retry: { max_attempts: 7 } } });
`,
    });
    const config = await loadConfig({ cwd: dir, env: {} });
    assert.deepEqual(
      config.entities.map((e) => e.name),
      ["Order"],
    );
    assert.deepEqual(config.observers[0]!.actions[0]!.body, { total: "{{ total }}" });
    assert.equal(config.webhooks.retry.maxAttempts, 7);
    assert.equal(config.observers[0]!.retry.maxAttempts, 7);
    assert.equal(config.server.port, 4200);
  });

  it("an included TypeScript module shares the modules already loaded, and imports fraiseql by name", async () => {
    // A second copy of undici (as a namespaced loader made) fails at load once the first is loaded.
    const undici = await import("undici");
    const fraiseql = await import("../../src/index.js");
    const dir = project({
      "package.json": '{ "type": "module" }\n',
      "fraiseql.toml": 'include = ["./schema.ts"]\n',
      "schema.ts": `import * as undici from ${JSON.stringify(import.meta.resolve("undici"))};
import * as fraiseql from "fraiseql";
(globalThis as Record<string, unknown>).__fqlIncluded = { undici, fraiseql };
export const order = fraiseql.defineEntity({ name: "Order", fields: { total: "Float" } });
`,
    });
    const config = await loadConfig({ cwd: dir, env: {} });
    assert.deepEqual(
      config.entities.map((e) => e.name),
      ["Order"],
    );
    const seen = (globalThis as { __fqlIncluded?: { undici: unknown; fraiseql: unknown } }).__fqlIncluded;
    assert.equal(seen?.undici, undici, "the same undici module, not a second copy");
    assert.equal(seen?.fraiseql, fraiseql, "fraiseql resolves to this package when the project has none");
  });

  it("gives the line and column of a syntax error in an included TypeScript module", async () => {
    const dir = project({
      "package.json": '{ "type": "module" }\n',
      "fraiseql.toml": 'include = ["./bad.ts"]\n',
      "bad.ts": "export const x = ;\n",
    });
    const err = await rejection(loadConfig({ cwd: dir, env: {} }));
    assert.equal(err.code, "FQL_CONFIG_INVALID");
    assert.match(err.message, /bad\.ts:1:17: ERROR: Unexpected ";"/);
  });

  it("names the module for an error in a key only its defineConfig sets", async () => {
    const dir = project({
      "fraiseql.toml": 'include = ["./settings.ts"]\n[webhooks]\ntimeout = "5s"\n',
      "settings.ts": `import { defineConfig } from ${JSON.stringify(DEFINE_URL)};\nexport default defineConfig({ webhooks: { dispatch: { lease: "5 minutes" } } });\n`,
    });
    const err = await rejection(loadConfig({ cwd: dir, env: {} }));
    assert.equal(err.location.key, "webhooks.dispatch.lease");
    assert.equal(err.location.file, "settings.ts");
    assert.equal(err.location.line, undefined);
  });

  it("refuses a key set both in the TOML file and in defineConfig", async () => {
    const dir = project({
      "fraiseql.toml": 'include = ["./settings.ts"]\n[webhooks]\ntimeout = "5s"\n',
      "settings.ts": `import { defineConfig } from ${JSON.stringify(DEFINE_URL)};\nexport default defineConfig({ webhooks: { timeout: "10s" } });\n`,
    });
    const err = await rejection(loadConfig({ cwd: dir, env: {} }));
    assert.equal(err.code, "FQL_CONFIG_INVALID");
    assert.equal(err.location.key, "webhooks.timeout");
    assert.ok(err.message.includes("both"), err.message);
  });

  it("reports a module that fails to load, at its include line", async () => {
    const dir = project({
      "fraiseql.toml": 'include = ["./broken.ts"]\n',
      "broken.ts": "export const = ;\n",
    });
    const err = await rejection(loadConfig({ cwd: dir, env: {} }));
    assert.equal(err.code, "FQL_CONFIG_INVALID");
    assert.deepEqual([err.location.key, err.location.line], ["include[0]", 1]);
  });
});
