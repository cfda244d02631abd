import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getDelivery } from "../../src/cli/deliveries.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventuallyCount, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const config = (actions: string[], schema = "fq_cfg") => `
[database]
schema = "${schema}"

[[entities]]
name = "Order"
table = "orders_${schema}"
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
      await db.query("INSERT INTO orders_fq_cfg (total) VALUES (1), (2), (3)");
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
      await db.query("INSERT INTO orders_fq_cfg (total) VALUES (4)");
      await mock.waitForCalls(1, 10_000, "/partner");
      await mock.waitForCalls(4, 10_000, "/internal");
    } finally {
      await second.close();
    }
  });
  it("the deliveries of a removed action are not sent to the action now at their index", async () => {
    mock.reset();
    mock.respond(() => ({ status: 503 }));
    const first = await startTestService(db, config(["/removed", "/kept"], "fq_cfg_rm"), {
      RECEIVER: mock.url,
    });
    try {
      await db.query("INSERT INTO orders_fq_cfg_rm (total) VALUES (1), (2)");
      await mock.waitForCalls(2, 10_000, "/removed");
      await mock.waitForCalls(2, 10_000, "/kept");
    } finally {
      await first.close();
    }
    mock.reset();
    mock.respond(undefined);
    const second = await startTestService(db, config(["/kept"], "fq_cfg_rm"), { RECEIVER: mock.url });
    try {
      await mock.waitForCalls(2, 10_000, "/kept");
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(
        mock
          .callsTo("/kept")
          .map((c) => c.json.id)
          .sort(),
        [1, 2],
        "each event once at /kept: its own deliveries, not those of /removed",
      );
      assert.equal(new Set(mock.callsTo("/kept").map((c) => c.deliveryId)).size, 2);
    } finally {
      await second.close();
    }
  });

  it("during a rolling deploy, a process without an action leaves its deliveries to the process that has it", async () => {
    mock.reset();
    // The new action fails its first attempt: its retries are queued, for either process to claim.
    mock.respond((call) => (call.path === "/a1" && call.attempt === 1 ? { status: 503 } : undefined));
    const old = await startTestService(db, config(["/a0"], "fq_cfg_roll"), { RECEIVER: mock.url });
    const next = await startTestService(db, config(["/a0", "/a1"], "fq_cfg_roll"), { RECEIVER: mock.url });
    try {
      for (let i = 0; i < 10; i++) {
        await db.query("INSERT INTO orders_fq_cfg_roll (total) SELECT g FROM generate_series(1, 5) AS g");
        await new Promise((r) => setTimeout(r, 20));
      }
      await eventuallyCount(
        db,
        "SELECT count(*)::int AS n FROM fq_cfg_roll.events WHERE routed_at IS NULL",
        0,
        15_000,
        "every event to be routed",
      );
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM fq_cfg_roll.deliveries WHERE action_index = 1",
      );
      assert.ok((rows[0]?.n ?? 0) > 0, "the new process routed some events");
      await eventuallyCount(
        db,
        "SELECT count(*)::int AS n FROM fq_cfg_roll.deliveries WHERE action_index = 1 AND status <> 'succeeded'",
        0,
        30_000,
        "the new action's deliveries, sent by the process that has it",
      );
      const { rows: dead } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM fq_cfg_roll.deliveries WHERE status = 'dead'",
      );
      assert.equal(dead[0]?.n, 0, "none dead-lettered as not configured");
    } finally {
      mock.respond(undefined);
      await old.close();
      await next.close();
    }
  });
});
