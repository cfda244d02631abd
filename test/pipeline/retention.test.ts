import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { internalTables } from "../../src/db/tables.js";
import { pruneOnce } from "../../src/delivery/retention.js";
import { ORDER_TOML, usePipeline } from "../helpers/app.js";

const TOML = `
${ORDER_TOML}
[webhooks.retry]
max_attempts = 1

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("retention", () => {
  const fx = usePipeline(TOML);

  it("prunes old finished deliveries, their history and their events in batches; keeps the rest", async () => {
    fx.mock.script([{ status: 400 }]); // the first order is dead-lettered
    await fx.db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 5) AS g");
    await fx.service.app.dispatcher.waitForIdle();
    // Age everything by ten days, then add fresh work.
    await fx.db.query("UPDATE fraiseql.deliveries SET finished_at = finished_at - interval '10 days'");
    await fx.db.query("UPDATE fraiseql.events SET routed_at = routed_at - interval '10 days'");
    await fx.db.query("INSERT INTO orders (total) VALUES (99)");
    await fx.service.app.dispatcher.waitForIdle();

    const t = internalTables("fraiseql");
    const day = 24 * 3600 * 1000;
    // Batches of 2: succeeded deliveries go first, a batch at a time.
    const first = await pruneOnce(fx.db, t, 7 * day, 30 * day, 2);
    assert.equal(first.deliveries, 2);
    let total = first.deliveries;
    for (let i = 0; i < 5; i++) total += (await pruneOnce(fx.db, t, 7 * day, 30 * day, 2)).deliveries;
    assert.equal(total, 4, "the four old succeeded deliveries are gone");

    const { rows } = await fx.db.query<{ status: string; n: number }>(
      "SELECT status, count(*)::int AS n FROM fraiseql.deliveries GROUP BY status ORDER BY status",
    );
    assert.deepEqual(rows, [
      { status: "dead", n: 1 },
      { status: "succeeded", n: 1 },
    ]);
    const { rows: attempts } = await fx.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.delivery_attempts",
    );
    assert.equal(attempts[0]!.n, 2, "history goes with its deliveries");
    const { rows: events } = await fx.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.events",
    );
    assert.equal(events[0]!.n, 2, "events stay while a delivery of theirs does");

    // Once the dead letter's own retention has passed, it goes too.
    await pruneOnce(fx.db, t, 7 * day, 5 * day, 100);
    const { rows: left } = await fx.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.deliveries",
    );
    assert.equal(left[0]!.n, 1);
  });
});
