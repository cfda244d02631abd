import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { openPglite } from "../../src/db/pglite.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, eventuallyCount, ORDER_TOML, startTestService, usePipeline } from "../helpers/app.js";
import { openTestDatabase, TEST_DATABASE_URL } from "../helpers/db.js";

const TOML = `
${ORDER_TOML}body = { order_id = "{{ id }}" }

[webhooks.dispatch]
concurrency = 2
poll_interval = "20ms"
`;

describe("routing with few free slots", () => {
  // Slow answers keep both slots busy.
  const fx = usePipeline(TOML, { receiver: { defaultResponse: { status: 200, delayMs: 400 } } });

  it("routes no more events than it can send; the rest wait in the outbox, and arrive in order", async () => {
    await fx.db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 10) AS g");
    await eventually(() => fx.mock.callCount >= 2, 10_000, "the first two deliveries to be sent");
    const { rows } = await fx.db.query<{ deliveries: number; unrouted: number; running: number }>(
      `SELECT (SELECT count(*) FROM fraiseql.deliveries)::int AS deliveries,
              (SELECT count(*) FROM fraiseql.deliveries WHERE status = 'running')::int AS running,
              (SELECT count(*) FROM fraiseql.events WHERE routed_at IS NULL)::int AS unrouted`,
    );
    assert.ok(rows[0]!.deliveries <= 4, `at most two slots' worth routed, got ${rows[0]!.deliveries}`);
    assert.ok(rows[0]!.unrouted >= 6, `the others still in the outbox, got ${rows[0]!.unrouted}`);
    assert.ok(rows[0]!.running <= 2, `at most concurrency in flight, got ${rows[0]!.running}`);

    await eventually(() => fx.mock.callCount >= 10, 30_000, "all ten deliveries");
    await eventuallyCount(
      fx.db,
      "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status = 'succeeded' AND attempts = 1",
      10,
      10_000,
      "ten deliveries succeeded at their first attempt",
    );
    // Started by routing, each one still has its history row and its attempt header.
    const { rows: history } = await fx.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.delivery_attempts WHERE attempt = 1 AND outcome = 'success'",
    );
    assert.equal(history[0]!.n, 10);
    assert.ok(fx.mock.calls.every((c) => c.headers["x-fraiseql-attempt"] === "1"));
    // Two slots, events routed oldest first: each arrives within one place of its turn.
    const order = fx.mock.calls.map((c) => Number(c.json.order_id));
    const sorted = [...order].sort((a, b) => a - b);
    for (const [i, id] of order.entries()) {
      assert.ok(Math.abs(sorted.indexOf(id) - i) <= 1, `arrival order ${order.join(",")}`);
    }
  });
});

describe("a routing write that fails after its requests went out", () => {
  const fx = usePipeline(TOML.replace("concurrency = 2", "concurrency = 8"));

  it("drops the outcome, routes the event again, and sends it again with the same delivery id", async () => {
    // The first insert into deliveries fails (a sequence is not rolled back with it).
    await fx.db.exec(`
      CREATE SEQUENCE public.fail_once;
      CREATE FUNCTION public.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('public.fail_once') = 1 THEN RAISE EXCEPTION 'injected routing failure'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER fail_once BEFORE INSERT ON fraiseql.deliveries
        FOR EACH ROW EXECUTE FUNCTION public.fail_once();`);
    await fx.db.query("INSERT INTO orders (total) VALUES (1)");
    await eventuallyCount(
      fx.db,
      "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status = 'succeeded'",
      1,
      10_000,
      "the delivery to succeed",
    );
    const ids = fx.mock.calls.map((c) => c.headers["x-fraiseql-delivery"]);
    assert.equal(ids.length, 2, "sent while the failed write committed, and again after routing again");
    assert.equal(ids[0], ids[1], "the same delivery id both times");
    const { rows } = await fx.db.query<{ id: string; attempts: number; history: number }>(
      `SELECT d.id::text, d.attempts,
              (SELECT count(*)::int FROM fraiseql.delivery_attempts a WHERE a.delivery_id = d.id) AS history
         FROM fraiseql.deliveries d`,
    );
    assert.deepEqual(rows, [{ id: ids[0], attempts: 1, history: 1 }]);
  });
});

describe("the embedded PGlite, which has no autovacuum", () => {
  it("gets statistics for its tables once enough rows changed", async () => {
    const db = Object.assign(await openPglite(), { url: undefined });
    const mock = await MockWebhookServer.start();
    const service = await startTestService(db, TOML.replace("concurrency = 2", "concurrency = 64"), {
      RECEIVER: mock.url,
    });
    try {
      const tuples = async () => {
        const { rows } = await db.query<{ n: number }>(
          "SELECT reltuples::float8 AS n FROM pg_class WHERE oid = 'fraiseql.deliveries'::regclass",
        );
        return rows[0]!.n;
      };
      assert.ok((await tuples()) <= 0, "a new table has no statistics");
      await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 400) AS g");
      await mock.waitForCalls(400, 30_000);
      await eventually(async () => (await tuples()) > 0, 10_000, "the deliveries table to be analysed");
    } finally {
      await service.close();
      await mock.close();
      await db.close();
    }
  });
});

describe("the liveness lock", {
  skip: TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)",
}, () => {
  for (const setting of [true, false]) {
    it(`is ${setting ? "held by default" : "not taken with liveness_lock = false"}`, async () => {
      const db = await openTestDatabase();
      const toml = setting
        ? TOML
        : TOML.replace("[webhooks.dispatch]", "[webhooks.dispatch]\nliveness_lock = false");
      const service = await startTestService(db, toml, { RECEIVER: "http://127.0.0.1:9" });
      try {
        await eventually(
          async () => (await db.query("SELECT 1 FROM fraiseql.workers")).rows.length === 1,
          10_000,
          "the worker's row",
        );
        const { rows } = await db.query<{ held: boolean; sessions: number }>(
          `SELECT (SELECT liveness_lock FROM fraiseql.workers) AS held,
                  (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND granted
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS sessions`,
        );
        assert.equal(rows[0]!.held, setting);
        assert.equal(rows[0]!.sessions, setting ? 1 : 0);
      } finally {
        await service.close();
        await db.close();
      }
    });
  }
});
