import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { replayDlq } from "../../src/dlq/replay.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// The seed's process_payment: three webhooks in order.
const toml = (execution: string, table: string) => `
[database]
schema = "fq_${execution}"

[[entities]]
name = "Payment"
table = "${table}"
[entities.fields]
id = "ID"
order_id = "Int"
status = "String"
amount = "Float"
items = "JSON"
shipping_address = "String"

[[observers]]
name = "process_payment"
entity = "Payment"
event = "INSERT"
condition = "status == 'approved'"
execution = "${execution}"

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/inventory/reserve"
body = { order_id = "{{ order_id }}", items = "{{ items }}" }

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/shipping/create-label"
body = { order_id = "{{ order_id }}", address = "{{ shipping_address }}" }

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/analytics/track"
body = { event = "payment_approved", amount = "{{ amount }}" }

[webhooks.retry]
max_attempts = 3
initial_delay = "10ms"
max_delay = "50ms"

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
table = "webhook_dlq_${execution}"
`;

const INSERT = (table: string) =>
  `INSERT INTO ${table} (order_id, status, amount, items, shipping_address)
   VALUES (7, 'approved', 250.5, '[{"sku":"A-1","qty":2}]', '1 Main St') RETURNING id`;

describe("seed pattern: multiple webhooks in sequence", () => {
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

  describe("sequential", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, toml("sequential", "payments"), { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("webhook 2 fails: retried, dead-lettered; webhook 3 is not sent and is dead-lettered as upstream_failed", async () => {
      mock.reset();
      mock.route("/shipping/create-label", [{ status: 500 }, { status: 500 }, { status: 500 }]);
      await db.query(INSERT("payments"));
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callsTo("/inventory/reserve").length, 1);
      assert.deepEqual(mock.callsTo("/inventory/reserve")[0]!.json, {
        order_id: 7,
        items: [{ sku: "A-1", qty: 2 }],
      });
      assert.equal(mock.callsTo("/shipping/create-label").length, 3);
      assert.equal(mock.callsTo("/analytics/track").length, 0);
      const dead = await service.app.dlq.list({ observer: "process_payment" });
      // The receiver's address came from ${RECEIVER}, so the DLQ shows it redacted.
      assert.deepEqual(dead.map((d) => [d.url.replace("[REDACTED]", ""), d.reason]).sort(), [
        ["/analytics/track", "upstream_failed"],
        ["/shipping/create-label", "http_5xx"],
      ]);
      // Calls were made in order: inventory before every shipping attempt.
      const order = mock.calls.map((c) => c.path);
      assert.equal(order[0], "/inventory/reserve");
    });

    it("after the receiver is fixed, replay delivers 2 then 3; 1 is not sent again", async () => {
      const failed = (await service.app.dlq.list({ reason: "http_5xx" }))[0]!;
      const shippingId = mock.callsTo("/shipping/create-label")[0]!.deliveryId;
      mock.reset(); // the shipping route answers 200 again
      const result = await replayDlq(
        { db, dlq: service.app.dlq, schema: "fq_sequential" },
        { ids: [failed.id] },
      );
      assert.equal(result.replayed, 1);
      service.app.dispatcher.wake();
      await service.app.dispatcher.waitForIdle();
      assert.deepEqual(
        mock.calls.map((c) => c.path),
        ["/shipping/create-label", "/analytics/track"],
      );
      const shipping = mock.callsTo("/shipping/create-label")[0]!;
      assert.equal(shipping.deliveryId, shippingId, "replay keeps the delivery id");
      assert.equal(shipping.attempt, 4, "attempt numbers go on from the failed attempts");
      assert.deepEqual(mock.callsTo("/analytics/track")[0]!.json, {
        event: "payment_approved",
        amount: 250.5,
      });
      assert.deepEqual(
        await service.app.dlq.list({ observer: "process_payment" }),
        [],
        "the DLQ is empty again",
      );
    });

    it("two replays of the same entry at once send it once", async () => {
      mock.reset();
      mock.route("/inventory/reserve", [{ status: 400 }]);
      await db.query(INSERT("payments"));
      await service.app.dispatcher.waitForIdle();
      const entry = (await service.app.dlq.list({ reason: "http_4xx" }))[0]!;
      mock.reset();
      const deps = { db, dlq: service.app.dlq, schema: "fq_sequential" };
      const [a, b] = await Promise.all([
        replayDlq(deps, { ids: [entry.id] }),
        replayDlq(deps, { ids: [entry.id] }),
      ]);
      assert.equal(a.replayed + b.replayed, 1);
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callsTo("/inventory/reserve").length, 1);
      assert.equal(mock.callsTo("/shipping/create-label").length, 1);
      assert.equal(mock.callsTo("/analytics/track").length, 1);
    });
  });

  describe("parallel", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, toml("parallel", "payments_parallel"), { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("a failing webhook does not hold back the others", async () => {
      mock.reset();
      mock.route("/shipping/create-label", [{ status: 500 }, { status: 500 }, { status: 500 }]);
      await db.query(INSERT("payments_parallel"));
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callsTo("/inventory/reserve").length, 1);
      assert.equal(mock.callsTo("/shipping/create-label").length, 3);
      assert.equal(mock.callsTo("/analytics/track").length, 1);
      const dead = await service.app.dlq.list({ observer: "process_payment" });
      assert.deepEqual(
        dead.map((d) => d.reason),
        ["http_5xx"],
      );
    });
  });
  describe("a sequence whose config changes while its actions wait", () => {
    // The same observer, sequential, then made parallel: the second actions routed under the
    // first config wait on the first ones, whichever process or config sends those.
    const config = (execution: string, schema = "fq_changed") => `
[database]
schema = "${schema}"

[[entities]]
name = "Payment"
table = "payments_${schema}"
[entities.fields]
id = "ID"
amount = "Float"

[[observers]]
name = "pay_then_report"
entity = "Payment"
event = "INSERT"
execution = "${execution}"
[[observers.actions]]
url = "\${RECEIVER}/pay"
[[observers.actions]]
url = "\${RECEIVER}/report"

[webhooks.retry]
max_attempts = 50
initial_delay = "50ms"
max_delay = "50ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

    it("a process whose config has no sequence still releases the waiting actions", async () => {
      mock.reset();
      mock.respond((call) => (call.path === "/pay" ? { status: 503 } : undefined));
      const first = await startTestService(db, config("sequential"), { RECEIVER: mock.url });
      try {
        await db.query("INSERT INTO payments_fq_changed (amount) VALUES (1), (2), (3)");
        await mock.waitForCalls(3, 10_000, "/pay");
      } finally {
        await first.close();
      }
      const { rows: waiting } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM fq_changed.deliveries WHERE status = 'waiting'",
      );
      assert.equal(waiting[0]?.n, 3);

      mock.respond(undefined);
      const second = await startTestService(db, config("parallel"), { RECEIVER: mock.url });
      try {
        await mock.waitForCalls(3, 10_000, "/report");
        await second.app.dispatcher.waitForIdle();
        const { rows } = await db.query<{ status: string; n: number }>(
          "SELECT status, count(*)::int AS n FROM fq_changed.deliveries GROUP BY status",
        );
        assert.deepEqual(
          rows.map((r) => [r.status, r.n]),
          [["succeeded", 6]],
        );

        // One left waiting behind a delivery that succeeded (as a process that did not release
        // it would leave it): the housekeeping releases it.
        const before = mock.callsTo("/report").length;
        await db.query(
          `UPDATE fq_changed.deliveries SET status = 'waiting'
            WHERE id = (SELECT id FROM fq_changed.deliveries WHERE depends_on IS NOT NULL LIMIT 1)`,
        );
        await mock.waitForCalls(before + 1, 15_000, "/report");
      } finally {
        await second.close();
      }
    });
    it("made parallel, the waiting actions are sent although the ones before them still fail", async () => {
      mock.reset();
      mock.respond((call) => (call.path === "/pay" ? { status: 503 } : undefined));
      const first = await startTestService(db, config("sequential", "fq_unchained"), { RECEIVER: mock.url });
      try {
        await db.query("INSERT INTO payments_fq_unchained (amount) VALUES (1), (2)");
        await mock.waitForCalls(2, 10_000, "/pay");
      } finally {
        await first.close();
      }
      const second = await startTestService(db, config("parallel", "fq_unchained"), { RECEIVER: mock.url });
      try {
        await mock.waitForCalls(2, 15_000, "/report");
      } finally {
        mock.respond(undefined);
        await second.close();
      }
    });
  });
});
