import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getDelivery } from "../../src/cli/deliveries.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventuallyCount, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const config = (actions: string[]) => `
[database]
schema = "fq_cfg"

[[entities]]
name = "Order"
table = "orders_cfg"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order"
entity = "Order"
event = "INSERT"
execution = "parallel"
${actions.map((path) => `[[observers.actions]]\nurl = "\${RECEIVER}${path}"\nbody = { id = "{{ id }}" }\n`).join("")}
[webhooks.retry]
max_attempts = 50
initial_delay = "50ms"
max_delay = "50ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("actions changed while deliveries are queued", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
  });
  after(async () => {
    await mock?.close();
    await db?.close();
  });

  it("a delivery goes to its own action after one is inserted before it, not to the new one", async () => {
    mock.respond(() => ({ status: 503 }));
    const first = await startTestService(db, config(["/internal"]), { RECEIVER: mock.url });
    try {
      await db.query("INSERT INTO orders_cfg (total) VALUES (1), (2), (3)");
      await mock.waitForCalls(3, 10_000, "/internal");
    } finally {
      await first.close();
    }

    mock.reset();
    mock.respond(undefined);
    const second = await startTestService(db, config(["/partner", "/internal"]), { RECEIVER: mock.url });
    try {
      await eventuallyCount(
        db,
        "SELECT count(*)::int AS n FROM fq_cfg.deliveries WHERE status = 'succeeded'",
        3,
        15_000,
        "the queued deliveries",
      );
      await second.app.dispatcher.waitForIdle();
      assert.equal(mock.callsTo("/partner").length, 0, "nothing queued for /internal went to /partner");
      assert.deepEqual(
        mock
          .callsTo("/internal")
          .map((c) => c.json.id)
          .sort(),
        [1, 2, 3],
      );
      const shown = await getDelivery(
        db,
        second.app.config,
        mock.callsTo("/internal")[0]!.deliveryId as string,
      );
      assert.match(shown?.request?.url ?? "", /\/internal$/, "deliveries show names the action it went to");

      // New events go to both actions of the new config.
      await db.query("INSERT INTO orders_cfg (total) VALUES (4)");
      await mock.waitForCalls(1, 10_000, "/partner");
      await mock.waitForCalls(4, 10_000, "/internal");
    } finally {
      await second.close();
    }
  });
});
