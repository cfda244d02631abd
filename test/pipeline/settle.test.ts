import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pg from "pg";
import { eventually, eventuallyCount, ORDER_TOML, usePipeline } from "../helpers/app.js";
import { TEST_DATABASE_URL } from "../helpers/db.js";

const TOML = `
${ORDER_TOML}
[webhooks.dispatch]
concurrency = 1
poll_interval = "20ms"
`;

// While the test holds this advisory lock, every write of delivery history waits for it.
const HOLD = 4711;

describe("a slot freed by a finished attempt", {
  // PGlite runs every statement on one connection: a held settle would stop the test's own queries.
  skip: TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)",
}, () => {
  const fx = usePipeline(TOML);

  it("takes the next delivery while the outcome is still being written, which loses nothing", async () => {
    await fx.db.exec(`
      CREATE FUNCTION public.hold_settle() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_xact_lock(${HOLD}); RETURN NEW; END $$;
      CREATE TRIGGER hold_settle BEFORE INSERT ON fraiseql.delivery_attempts
        FOR EACH ROW EXECUTE FUNCTION public.hold_settle();`);
    const holder = new pg.Client({ connectionString: fx.db.url });
    await holder.connect();
    try {
      await holder.query("SELECT pg_advisory_lock($1)", [HOLD]);
      await fx.db.query("INSERT INTO orders (total) VALUES (1), (2)");
      // One slot: the second request can only go out if the first's slot was freed before its
      // outcome committed.
      const state = async () =>
        (
          await fx.db.query<{ status: string; n: number }>(
            "SELECT status, count(*)::int AS n FROM fraiseql.deliveries GROUP BY status ORDER BY status",
          )
        ).rows;
      try {
        await eventually(() => fx.mock.callCount >= 2, 20_000, "both requests");
      } catch (error) {
        const seen = JSON.stringify({ calls: fx.mock.callCount, deliveries: await state() });
        throw new Error(`${(error as Error).message}, the first outcome still unwritten: ${seen}`);
      }
      // The second request goes out while its routing write commits: its row may come a moment
      // later. Neither outcome is written while the lock is held.
      await eventually(
        async () => JSON.stringify(await state()) === JSON.stringify([{ status: "running", n: 2 }]),
        5_000,
        "both deliveries running, neither settled",
      );
      // The heartbeat renews the leases every lease/3 (1.7 s): its renewal waits for the row the
      // held settle updated, and later beats do not pile up behind it, each on a connection.
      await new Promise((r) => setTimeout(r, 4000));
      const { rows: renewals } = await fx.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SET locked_until%'`,
      );
      assert.equal(renewals[0]!.n, 1);
      await holder.query("SELECT pg_advisory_unlock($1)", [HOLD]);
    } finally {
      await holder.end();
    }
    await eventuallyCount(
      fx.db,
      "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status = 'succeeded' AND attempts = 1",
      2,
      10_000,
      "both deliveries succeeded at their first attempt",
    );
    const { rows: history } = await fx.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.delivery_attempts WHERE outcome = 'success'",
    );
    assert.equal(history[0]!.n, 2);
    assert.equal(fx.mock.callCount, 2);
  });
});
