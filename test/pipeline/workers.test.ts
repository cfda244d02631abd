import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MockWebhookServer, type ScriptedResponse } from "../../src/testing/index.js";
import { eventually } from "../helpers/app.js";
import { exited, spawnCli, writeMigratedConfig } from "../helpers/cli.js";
import { openTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/db.js";

// Worker processes share one database: that needs a server. CI always sets TEST_DATABASE_URL.
const skip = TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)";

function configText(db: TestDatabase, receiver: string, opts: { timeout: string; lease: string }): string {
  return `[database]
url = "${db.url}"

[[entities]]
name = "Order"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "${receiver}/orders"
body = { order_id = "{{ id }}" }
timeout = "${opts.timeout}"

[webhooks.retry]
max_attempts = 5
initial_delay = "20ms"
max_delay = "1s"

[webhooks.dispatch]
poll_interval = "20ms"
lease = "${opts.lease}"
concurrency = 64
`;
}

async function terminalCount(db: TestDatabase): Promise<{ succeeded: number; dead: number; other: number }> {
  const { rows } = await db.query<{ status: string; n: number }>(
    "SELECT status, count(*)::int AS n FROM fraiseql.deliveries GROUP BY status",
  );
  const get = (s: string) => rows.find((r) => r.status === s)?.n ?? 0;
  const other = rows
    .filter((r) => r.status !== "succeeded" && r.status !== "dead")
    .reduce((n, r) => n + r.n, 0);
  return { succeeded: get("succeeded"), dead: get("dead"), other };
}

describe("several workers on one database", { skip }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "fraiseql-workers-"));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const workers of [2, 4]) {
    it(`${workers} workers: no delivery is sent twice in a run without faults`, async () => {
      const db = await openTestDatabase();
      const mock = await MockWebhookServer.start();
      const config = join(dir, `workers-${workers}.toml`);
      // No faults: generous timeout and lease, so a busy machine causes no retry.
      await writeMigratedConfig(config, configText(db, mock.url, { timeout: "30s", lease: "10s" }));
      try {
        await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 2000) AS g");
        const procs = Array.from({ length: workers }, () => spawnCli(["worker", "--config", config]));
        try {
          await eventually(
            async () => (await terminalCount(db)).succeeded === 2000,
            90_000,
            "2000 deliveries",
          );
        } finally {
          for (const p of procs) p.kill("SIGTERM");
        }
        for (const p of procs) assert.equal(await exited(p), 0, p.output());
        const ids = mock.calls.map((c) => c.deliveryId);
        assert.equal(ids.length, 2000, "each delivery was sent exactly once");
        assert.equal(new Set(ids).size, 2000);
        const { rows } = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM fraiseql.delivery_attempts WHERE attempt > 1",
        );
        assert.equal(rows[0]!.n, 0, "no delivery needed a second attempt");
      } finally {
        await mock.close();
        await db.close();
      }
    });
  }

  it("chaos: random 500s, 429s with Retry-After, timeouts, dropped connections and SIGKILLed workers lose nothing", async () => {
    const db = await openTestDatabase();
    let seed = 42;
    const random = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const chaos = (): ScriptedResponse | undefined => {
      const r = random();
      if (r < 0.1) return { status: 500 };
      if (r < 0.15) return { status: 429, headers: { "Retry-After": "1" } };
      if (r < 0.2) return { status: 200, delayMs: 600 }; // beyond the 300 ms timeout
      if (r < 0.25) return { drop: true };
      return undefined;
    };
    const mock = await MockWebhookServer.start();
    mock.respond(chaos);
    const config = join(dir, "chaos.toml");
    await writeMigratedConfig(config, configText(db, mock.url, { timeout: "300ms", lease: "1s" }));
    try {
      await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 2000) AS g");
      let worker = spawnCli(["worker", "--config", config]);
      for (const calls of [300, 900, 1500]) {
        await eventually(() => mock.callCount >= calls, 90_000, `${calls} calls`);
        worker.kill("SIGKILL");
        assert.equal(await exited(worker), "SIGKILL");
        worker = spawnCli(["worker", "--config", config]);
      }
      try {
        await eventually(
          async () => {
            const c = await terminalCount(db);
            return c.other === 0 && c.succeeded + c.dead === 2000;
          },
          120_000,
          "every delivery to finish",
        );
      } finally {
        worker.kill("SIGTERM");
      }
      assert.equal(await exited(worker), 0, worker.output());

      const { succeeded, dead } = await terminalCount(db);
      assert.equal(succeeded + dead, 2000, "delivered + dead-lettered = 2000");
      const { rows: dlq } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM webhook_dlq");
      assert.equal(dlq[0]!.n, dead, "every dead delivery has its dead letter");
      // Every duplicate carries its original delivery id: one id per order.
      const idsByOrder = new Map<number, Set<string>>();
      for (const call of mock.calls) {
        const set = idsByOrder.get(call.json.order_id) ?? new Set<string>();
        set.add(call.deliveryId as string);
        idsByOrder.set(call.json.order_id, set);
      }
      for (const [order, set] of idsByOrder) assert.equal(set.size, 1, `order ${order} has one delivery id`);
      assert.equal(idsByOrder.size, 2000, "every event was attempted");
      // Each succeeded delivery was answered 2xx at least once by the receiver.
      const { rows: okIds } = await db.query<{ id: string }>(
        "SELECT id::text FROM fraiseql.deliveries WHERE status = 'succeeded'",
      );
      const attempted = new Set(mock.calls.map((c) => c.deliveryId));
      for (const { id } of okIds) assert.ok(attempted.has(id));
    } finally {
      await mock.close();
      await db.close();
    }
  });
});
