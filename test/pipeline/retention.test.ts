import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { internalTables } from "../../src/db/tables.js";
import { pruneOnce } from "../../src/delivery/retention.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const TOML = `
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
url = "\${RECEIVER}/orders"

[webhooks.retry]
max_attempts = 1

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("retention", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    service = await startTestService(db, TOML, { RECEIVER: mock.url });
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("prunes old finished deliveries, their history and their events in batches; keeps the rest", async () => {
    mock.script([{ status: 400 }]); // the first order is dead-lettered
    await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 5) AS g");
    await service.app.dispatcher.waitForIdle();
    // Age everything by ten days, then add fresh work.
    await db.query("UPDATE fraiseql.deliveries SET finished_at = finished_at - interval '10 days'");
    await db.query("UPDATE fraiseql.events SET routed_at = routed_at - interval '10 days'");
    await db.query("INSERT INTO orders (total) VALUES (99)");
    await service.app.dispatcher.waitForIdle();

    const t = internalTables("fraiseql");
    const day = 24 * 3600 * 1000;
    // Batches of 2: succeeded deliveries go first, a batch at a time.
    const first = await pruneOnce(db, t, 7 * day, 30 * day, 2);
    assert.equal(first.deliveries, 2);
    let total = first.deliveries;
    for (let i = 0; i < 5; i++) total += (await pruneOnce(db, t, 7 * day, 30 * day, 2)).deliveries;
    assert.equal(total, 4, "the four old succeeded deliveries are gone");

    const { rows } = await db.query<{ status: string; n: number }>(
      "SELECT status, count(*)::int AS n FROM fraiseql.deliveries GROUP BY status ORDER BY status",
    );
    assert.deepEqual(rows, [
      { status: "dead", n: 1 },
      { status: "succeeded", n: 1 },
    ]);
    const { rows: attempts } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.delivery_attempts",
    );
    assert.equal(attempts[0]!.n, 2, "history goes with its deliveries");
    const { rows: events } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM fraiseql.events");
    assert.equal(events[0]!.n, 2, "events stay while a delivery of theirs does");

    // Once the dead letter's own retention has passed, it goes too.
    await pruneOnce(db, t, 7 * day, 5 * day, 100);
    const { rows: left } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.deliveries",
    );
    assert.equal(left[0]!.n, 1);
  });
});
