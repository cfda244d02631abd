import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, eventuallyCount } from "../helpers/app.js";
import { exited, spawnCli, writeMigratedConfig } from "../helpers/cli.js";
import { openTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/db.js";

// A separate worker process shares the database with this test: that needs a server, not the
// in-process PGlite. CI always sets TEST_DATABASE_URL, so there this test always runs.
const skip = TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)";

const EVENTS = 300;

/**
 * A database, a receiver answering after `delayMs`, and a migrated configuration file for worker
 * processes: the `Order` entity, then `rest` (observers and dispatch settings), given the
 * receiver's URL. Everything is closed after the suite.
 */
function useWorkerSetup(delayMs: number, rest: (receiverUrl: string) => string) {
  const fx = {} as { db: TestDatabase; mock: MockWebhookServer; config: string };
  let dir: string | undefined;
  before(async () => {
    fx.db = await openTestDatabase();
    fx.mock = await MockWebhookServer.start({ defaultResponse: { status: 200, delayMs } });
    dir = await mkdtemp(join(tmpdir(), "fraiseql-crash-"));
    fx.config = join(dir, "fraiseql.toml");
    await writeMigratedConfig(
      fx.config,
      `[database]
url = "${fx.db.url}"

[[entities]]
name = "Order"
[entities.fields]
id = "ID"
total = "Float"

${rest(fx.mock.url)}`,
    );
  });
  after(async () => {
    await fx.mock?.close();
    await fx.db?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return fx;
}

/** The observer whose deliveries the suites below follow: one per order, carrying its id. */
function orderObserver(receiver: string): string {
  return `[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "${receiver}/orders"
body = { order_id = "{{ id }}" }
`;
}

describe("crash recovery", { skip }, () => {
  // Slow answers keep many deliveries in flight when the worker is killed.
  const fx = useWorkerSetup(
    40,
    (receiver) => `${orderObserver(receiver)}
[webhooks.dispatch]
poll_interval = "50ms"
lease = "2s"
concurrency = 64
`,
  );

  it("SIGKILL with deliveries in flight, restart: every event arrives with its original delivery id", async () => {
    await fx.db.query(`INSERT INTO orders (total) SELECT g FROM generate_series(1, ${EVENTS}) AS g`);
    const first = spawnCli(["worker", "--config", fx.config]);
    await eventually(() => fx.mock.callCount >= 60, 60_000, "the first worker to deliver some events");
    first.kill("SIGKILL");
    assert.equal(await exited(first), "SIGKILL");
    const beforeRestart = new Set(fx.mock.calls.map((c) => c.json.order_id)).size;
    assert.ok(beforeRestart < EVENTS, "the worker was killed before it delivered everything");

    const second = spawnCli(["worker", "--config", fx.config]);
    try {
      await eventually(
        () => new Set(fx.mock.calls.map((c) => c.json.order_id)).size === EVENTS,
        60_000,
        `all ${EVENTS} events to arrive`,
      );
      // Deliveries the killed worker sent but never recorded are sent again once its leases
      // expire: duplicates, with their original delivery ids.
      await eventuallyCount(
        fx.db,
        "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status = 'succeeded'",
        EVENTS,
        60_000,
        "every delivery to be recorded as succeeded",
      );
    } finally {
      second.kill("SIGTERM");
    }
    assert.equal(await exited(second), 0, second.output());

    const idsByOrder = new Map<number, Set<string>>();
    for (const call of fx.mock.calls) {
      const ids = idsByOrder.get(call.json.order_id) ?? new Set();
      ids.add(call.deliveryId as string);
      idsByOrder.set(call.json.order_id, ids);
    }
    assert.equal(idsByOrder.size, EVENTS);
    for (const [order, ids] of idsByOrder) assert.equal(ids.size, 1, `order ${order} kept one delivery id`);
    const { rows } = await fx.db.query<{ status: string; n: number }>(
      "SELECT status, count(*)::int AS n FROM fraiseql.deliveries GROUP BY status",
    );
    assert.deepEqual(rows, [{ status: "succeeded", n: EVENTS }]);
  });
});

describe("crash recovery of batches", { skip }, () => {
  const fx = useWorkerSetup(
    150,
    (receiver) => `[[observers]]
name = "batch_order_analytics"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "${receiver}/batch"
batch = { size = 10, timeout = "300ms" }
body = { orders = [{ id = "{{ id }}" }] }

[webhooks.dispatch]
poll_interval = "50ms"
lease = "2s"
`,
  );

  it("SIGKILL while batches fill and fly: every event arrives, and a batch always carries the same events", async () => {
    const first = spawnCli(["worker", "--config", fx.config]);
    // Rows arrive over time, so batches are filling when the worker dies.
    for (let i = 0; i < 30; i++) {
      await fx.db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 10) AS g");
      if (i === 15) {
        await eventually(() => fx.mock.callCount >= 3, 30_000, "some batches");
        first.kill("SIGKILL");
        assert.equal(await exited(first), "SIGKILL");
      }
    }
    const second = spawnCli(["worker", "--config", fx.config]);
    const ids = () => new Set(fx.mock.calls.flatMap((c) => c.json.orders.map((o: { id: number }) => o.id)));
    try {
      await eventually(() => ids().size === 300, 60_000, "all 300 events");
      await eventuallyCount(
        fx.db,
        "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status <> 'succeeded'",
        0,
        60_000,
        "every delivery recorded",
      );
    } finally {
      second.kill("SIGTERM");
    }
    assert.equal(await exited(second), 0, second.output());
    const byBatch = new Map<string, string>();
    for (const call of fx.mock.calls) {
      const members: number[] = call.json.orders.map((o: { id: number }) => o.id);
      assert.equal(new Set(members).size, members.length, "no event twice in a batch");
      const key = JSON.stringify([...members].sort((a, b) => a - b));
      const seen = byBatch.get(call.deliveryId as string);
      if (seen !== undefined) assert.equal(key, seen, "a re-sent batch carries the same events");
      byBatch.set(call.deliveryId as string, key);
    }
  });
});

describe("a killed worker's liveness lock", { skip }, () => {
  // A lease of a minute: without the liveness lock the killed worker's deliveries would wait
  // 40 s (two missed heartbeats) before another worker took them back.
  const fx = useWorkerSetup(
    300,
    (receiver) => `${orderObserver(receiver)}
[webhooks.dispatch]
poll_interval = "50ms"
lease = "60s"
concurrency = 16
`,
  );

  it("frees the lock when the process dies: another worker takes its deliveries back without waiting for the lease", async () => {
    await fx.db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 40) AS g");
    const first = spawnCli(["worker", "--config", fx.config]);
    const second = spawnCli(["worker", "--config", fx.config]);
    try {
      await eventuallyCount(
        fx.db,
        "SELECT count(*)::int AS n FROM fraiseql.workers WHERE liveness_lock",
        2,
        60_000,
        "both workers to hold their liveness lock",
      );
      await eventually(() => fx.mock.callCount >= 4, 60_000, "some deliveries to be in flight");
      first.kill("SIGKILL");
      assert.equal(await exited(first), "SIGKILL");
      await eventually(
        () => new Set(fx.mock.calls.map((c) => c.json.order_id)).size === 40,
        25_000,
        "every event to arrive, well before the killed worker's 60 s leases run out",
      );
      await eventuallyCount(
        fx.db,
        "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status <> 'succeeded'",
        0,
        25_000,
        "every delivery to be recorded as succeeded",
      );
      await eventuallyCount(
        fx.db,
        "SELECT count(*)::int AS n FROM fraiseql.workers",
        1,
        10_000,
        "the dead worker's row to be removed",
      );
    } finally {
      if (first.exitCode === null && first.signalCode === null) first.kill("SIGKILL");
      second.kill("SIGTERM");
      await exited(second);
    }
  });
});
