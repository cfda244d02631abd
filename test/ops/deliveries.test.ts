import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { listDeliveries } from "../../src/cli/deliveries.js";
import { startService } from "../../src/cli/serve.js";
import { loadConfig } from "../../src/config/load.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { exited, runCli, spawnCli } from "../helpers/cli.js";
import { openTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/db.js";

const TOML = `
[[entities]]
name = "Payment"
[entities.fields]
id = "ID"
amount = "Float"

[[observers]]
name = "on_payment"
entity = "Payment"
event = "INSERT"
[[observers.actions]]
url = "RECEIVER/payments"

[[observers]]
name = "on_refund"
entity = "Payment"
event = "INSERT"
condition = "amount < 0"
[[observers.actions]]
url = "RECEIVER/refunds"

[webhooks.retry]
max_attempts = 2
initial_delay = "10ms"
max_delay = "50ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

/**
 * The history commands read the database of a config file, in another process: the scenario
 * runs first in this process (on PGlite persisted in a temporary directory, or on a fresh
 * PostgreSQL database), then the command line reads what it left.
 */
describe("fraiseql deliveries list / show", () => {
  let dir: string;
  let configPath: string;
  let mock: MockWebhookServer;
  let pgDb: TestDatabase | undefined;
  const env: Record<string, string> = {};
  /** The delivery that needed 2 attempts (500, then 200). */
  let retried: string;
  let dead: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "fraiseql-deliveries-"));
    mock = await MockWebhookServer.start();
    mock.route("/payments", [
      { status: 500, body: "temporarily down" },
      { status: 200, body: "accepted" },
    ]);
    mock.route("/refunds", [{ status: 422, body: "unknown refund" }]);
    let database = `[database]\ndata_dir = "${join(dir, "data")}"\n`;
    if (TEST_DATABASE_URL) {
      pgDb = await openTestDatabase();
      env.HISTORY_DB_URL = pgDb.url!;
      database = `[database]\nurl = "\${HISTORY_DB_URL}"\n`;
    }
    configPath = join(dir, "fraiseql.toml");
    await writeFile(configPath, `${database}${TOML.replaceAll("RECEIVER", mock.url)}`);
    const config = await loadConfig({ path: configPath, env });
    const service = await startService(config, { http: false });
    try {
      const { rows } = await service.app.db.query<{ id: string }>(
        "INSERT INTO payments (amount) VALUES (-5) RETURNING id",
      );
      assert.ok(rows[0]);
      await mock.waitForCalls(3, 10_000);
      await service.app.dispatcher.waitForIdle();
      const all = await listDeliveries(service.app.db, config.database.schema);
      retried = all.find((d) => d.observer === "on_payment")!.id;
      dead = all.find((d) => d.observer === "on_refund")!.id;
    } finally {
      await service.close();
    }
  });
  after(async () => {
    await mock?.close();
    await pgDb?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function cli(...args: string[]) {
    return runCli([...args, "--config", configPath], { env });
  }

  it("list shows each delivery with its status, attempts and last error, newest first", () => {
    const r = cli("deliveries", "list");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(
      lines[0]!,
      /^ID\s+CREATED\s+OBSERVER\s+ACTION\s+EVENT\s+STATUS\s+ATTEMPTS\s+LAST\s+REASON \/ ERROR$/,
    );
    assert.equal(lines.length, 3);
    const payment = lines.find((l) => l.startsWith(retried));
    const refund = lines.find((l) => l.startsWith(dead));
    assert.match(
      payment ?? "",
      /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+on_payment\s+0\s+Payment INSERT #\d+\s+succeeded\s+2\s+200\s+-$/,
    );
    assert.match(refund ?? "", /on_refund\s+0\s+Payment INSERT #\d+\s+dead\s+1\s+422\s+http_4xx: HTTP 422$/);
  });

  it("list says when it stops at --limit, and refuses a limit that is not a positive number", () => {
    const one = cli("deliveries", "list", "--limit", "1");
    assert.equal(one.status, 0, one.stderr);
    assert.equal(one.stdout.trimEnd().split("\n").length, 2, "the header and one delivery");
    assert.match(one.stderr, /showing the newest 1 deliveries; there are more: pass --limit N/);
    const all = cli("deliveries", "list", "--limit", "2");
    assert.equal(all.stderr, "", "no note when nothing was left out");
    const bad = cli("deliveries", "list", "--limit", "0");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--limit: "0" is not a positive whole number/);
  });

  it("list filters by status and observer, and prints JSON", () => {
    const failed = cli("deliveries", "list", "--status", "failed", "--json");
    assert.equal(failed.status, 0, failed.stderr);
    const rows = JSON.parse(failed.stdout) as { id: string; status: string; reason: string }[];
    assert.deepEqual(
      rows.map((d) => [d.id, d.status, d.reason]),
      [[dead, "dead", "http_4xx"]],
    );
    const ok = cli(
      "deliveries",
      "list",
      "--status",
      "succeeded",
      "--observer",
      "on_payment",
      "--since",
      "1h",
    );
    assert.equal(ok.stdout.trimEnd().split("\n").length, 2, ok.stdout);
    assert.match(ok.stdout, new RegExp(retried));
    const none = cli("deliveries", "list", "--status", "pending");
    assert.equal(none.stdout, "no deliveries\n");
    const bad = cli("deliveries", "list", "--status", "broken");
    assert.equal(bad.status, 2);
    assert.match(
      bad.stderr,
      /--status: "broken" is not a delivery status.*failed, succeeded, dead, pending/s,
    );
  });

  it("show prints the delivery and its two attempts: time, status, duration, error, response", () => {
    const r = cli("deliveries", "show", retried);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^delivery  ${retried}\\n`));
    assert.match(r.stdout, /^observer {2}on_payment, action 0: POST http:\/\/127\.0\.0\.1:\d+\/payments$/m);
    assert.match(r.stdout, /^event {5}#\d+ INSERT on Payment$/m);
    assert.match(r.stdout, /^status {4}succeeded after 2 attempts$/m);
    const timeline = r.stdout.slice(r.stdout.indexOf("attempts:\n"));
    const lines = timeline.split("\n");
    assert.match(lines[1]!, /^ {2}#\s+STARTED\s+STATUS\s+DURATION\s+ERROR$/);
    assert.match(lines[2]!, /^ {2}1\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\s+500\s+[\d.]+ ms\s+HTTP 500$/);
    assert.equal(lines[3], '     response: "temporarily down"');
    assert.match(lines[4]!, /^ {2}2\s+\S+\s+200\s+[\d.]+ ms\s+-$/);
    assert.equal(lines[5], '     response: "accepted"');
  });

  it("show --json gives the same timeline; the id's last characters are enough", () => {
    const r = cli("deliveries", "show", retried.slice(-8), "--json");
    assert.equal(r.status, 0, r.stderr);
    const detail = JSON.parse(r.stdout);
    assert.equal(detail.id, retried);
    assert.equal(detail.status, "succeeded");
    assert.deepEqual(
      detail.timeline.map(
        (a: { attempt: number; status: number; outcome: string; error: string | null; response: string }) => [
          a.attempt,
          a.status,
          a.outcome,
          a.error,
          a.response,
        ],
      ),
      [
        [1, 500, "http", "HTTP 500", "temporarily down"],
        [2, 200, "success", null, "accepted"],
      ],
    );
    assert.ok(detail.timeline.every((a: { durationMs: number }) => a.durationMs >= 0));
  });

  it("show names a dead delivery's reason and points at the DLQ; an unknown id is a clear error", () => {
    const r = cli("deliveries", "show", dead);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^status {4}dead-lettered after 1 attempt \(http_4xx\)$/m);
    assert.match(r.stdout, /^dlq {7}fraiseql dlq list --observer on_refund$/m);
    const missing = cli("deliveries", "show", "00000000-0000-4000-8000-000000000000");
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no delivery with id "00000000-0000-4000-8000-000000000000"/);
    assert.doesNotMatch(missing.stderr, /\n\s+at /);
  });

  it("doctor exits 1 and names the problem: a delivery dead-lettered", async () => {
    // Run without blocking this process: doctor probes the receiver served from here.
    const run = async (...args: string[]) => {
      const child = spawnCli([...args, "--config", configPath], { env });
      const status = await exited(child);
      return { status, stdout: child.output() };
    };
    const r = await run("doctor");
    assert.equal(r.status, 1, r.stdout);
    assert.match(
      r.stdout,
      /observer on_refund\n(.*\n)*? {2}✗ deliveries of the last 24 h: 1 dead\n {6}fix: see why: `fraiseql deliveries list --observer on_refund --status dead`/,
    );
    assert.match(r.stdout, /\n1 problem found\n$/);
    const one = await run("doctor", "on_payment");
    assert.equal(one.status, 0, one.stdout);
    assert.match(one.stdout, /✓ action 0: POST http:\/\/127\.0\.0\.1:\d+\/payments: reachable/);
  });
});
