import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { formatDeliveryDetail, getDelivery } from "../../src/cli/deliveries.js";
import type { Service } from "../../src/cli/serve.js";
import { replayDlq } from "../../src/dlq/replay.js";
import { createRedactor } from "../../src/redact.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// The seed's batch_order_analytics, with a per-action batch.
const perAction = (schema: string, size: number, timeout: string) => `
[database]
schema = "${schema}"

[[entities]]
name = "Order"
table = "orders_${schema}"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "batch_order_analytics"
entity = "Order"
event = "INSERT"
condition = "true"
[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/analytics/batch"
batch = { size = ${size}, timeout = "${timeout}" }
body = { orders = [{ id = "{{ id }}", total = "{{ total }}" }], batch_timestamp = "{{ _timestamp }}", count = "{{ _count }}" }

[webhooks.retry]
max_attempts = 2
initial_delay = "10ms"

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
table = "dlq_${schema}"
`;

// The seed's global [webhooks.batching] section.
const GLOBAL = `
[database]
schema = "fq_global"

[[entities]]
name = "Order"
table = "orders_global"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/orders"

# The seed's order-created body, written for one event.
[[entities]]
name = "Shipment"
table = "shipments_global"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_shipment_created"
entity = "Shipment"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/shipments"
body = { event = "shipment.created", shipment_id = "{{ id }}", total = "{{ total }}", timestamp = "{{ _timestamp }}" }

[webhooks.batching]
enabled = true
batch_size = 50
timeout = "10s"

[webhooks.dispatch]
poll_interval = "20ms"
`;

// A sequence ending in a batched action.
const CHAIN = `
[database]
schema = "fq_chain"

[[entities]]
name = "Order"
table = "orders_chain"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "reserve_then_report"
entity = "Order"
event = "INSERT"
execution = "sequential"
[[observers.actions]]
url = "\${RECEIVER}/reserve"
body = { id = "{{ id }}" }
[[observers.actions]]
url = "\${RECEIVER}/report"
batch = { size = 5, timeout = "300ms" }
body = { items = [{ id = "{{ id }}" }] }

[webhooks.retry]
max_attempts = 1

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
table = "dlq_chain"
`;

describe("batching", () => {
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

  describe("per action", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, perAction("fq_b10", 10, "500ms"), { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("100 events at size 10: exactly 10 POSTs, every event in exactly one", async () => {
      mock.reset();
      await db.query("INSERT INTO orders_fq_b10 (total) SELECT g FROM generate_series(1, 100) AS g");
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 10);
      const ids = mock.calls.flatMap((c) => c.json.orders.map((o: { id: number }) => o.id));
      assert.equal(ids.length, 100);
      assert.equal(new Set(ids).size, 100);
      for (const call of mock.calls) {
        assert.equal(call.json.orders.length, 10);
        assert.equal(call.json.count, 10);
        assert.equal(typeof call.json.orders[0].total, "number");
        assert.match(call.json.batch_timestamp, /^\d{4}-\d\d-\d\dT/);
      }
      assert.equal(new Set(mock.calls.map((c) => c.deliveryId)).size, 10, "one delivery id per batch");

      // `deliveries show` finds a batch by the id its receiver saw.
      const batchId = mock.calls[0]!.deliveryId as string;
      const detail = await getDelivery(db, service.app.config, batchId);
      assert.equal(detail?.batchId, batchId);
      assert.equal(detail?.batchMembers?.length, 10);
      assert.equal(detail?.status, "succeeded");
      assert.deepEqual(
        detail?.timeline.map((a) => a.status),
        [200],
      );
      assert.match(
        formatDeliveryDetail(detail!, createRedactor([])),
        /batch {5}\S+: 10 deliveries sent as one request/,
      );
    });

    it("a partial batch of 3 leaves after its timeout, not before", async () => {
      mock.reset();
      await db.query("INSERT INTO orders_fq_b10 (total) SELECT g FROM generate_series(1, 3) AS g");
      const { rows } = await db.query<{ t: Date }>("SELECT max(created_at) AS t FROM fq_b10.events");
      const written = rows[0]!.t.getTime();
      await mock.waitForCalls(1, 10_000);
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 1);
      assert.equal(mock.calls[0]!.json.orders.length, 3);
      assert.ok(mock.calls[0]!.receivedAt - written >= 500, "sent once the oldest event had waited 500ms");
    });

    it("a failing batch is dead-lettered whole, and its replay delivers the same events", async () => {
      mock.reset();
      mock.script([{ status: 500 }, { status: 500 }]);
      await db.query("INSERT INTO orders_fq_b10 (total) SELECT g FROM generate_series(1, 10) AS g");
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 2, "one batch, two attempts");
      const dead = await service.app.dlq.list({ observer: "batch_order_analytics" });
      assert.equal(dead.length, 1, "one entry for the batch");
      const entry = dead[0]!;
      assert.equal(entry.delivery_id, mock.calls[0]!.deliveryId);
      const failedIds = (entry.payload as { orders: { id: number }[] }).orders.map((o) => o.id);
      assert.equal(failedIds.length, 10);

      mock.reset();
      const result = await replayDlq({ db, dlq: service.app.dlq, schema: "fq_b10" }, { ids: [entry.id] });
      assert.equal(result.replayed, 1);
      service.app.dispatcher.wake();
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 1);
      assert.equal(mock.calls[0]!.deliveryId, entry.delivery_id, "the replay keeps the batch's delivery id");
      assert.deepEqual(
        mock.calls[0]!.json.orders.map((o: { id: number }) => o.id),
        failedIds,
      );
      assert.deepEqual(await service.app.dlq.list({ observer: "batch_order_analytics" }), []);
    });
  });

  describe("[webhooks.batching] (the seed's global section)", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, GLOBAL, { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("100 order inserts with batch_size 50: 2 HTTP calls instead of 100", async () => {
      mock.reset();
      await db.query("INSERT INTO orders_global (total) SELECT g FROM generate_series(1, 100) AS g");
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 2);
      assert.deepEqual(
        mock.calls.map((c) => c.json.count),
        [50, 50],
      );
      assert.equal(mock.calls[0]!.json.events[0].entity, "Order");
    });

    it("a body written for one event is rendered for each event of the batch, none lost", async () => {
      mock.reset();
      await db.query("INSERT INTO shipments_global (total) SELECT g FROM generate_series(1, 100) AS g");
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 2);
      const { rows } = await db.query<{ id: string; t: string }>(
        `SELECT (new_row->>'id') AS id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS t
           FROM fq_global.events WHERE entity = 'Shipment' ORDER BY id`,
      );
      const sent = mock.calls.flatMap((c) => {
        assert.equal(c.path, "/shipments");
        assert.equal(c.json.count, 50);
        assert.match(c.json.timestamp, /^\d{4}-\d\d-\d\dT/);
        return c.json.events as { event: string; shipment_id: number; total: number; timestamp: string }[];
      });
      assert.deepEqual(
        sent.map((e) => String(e.shipment_id)).sort(),
        rows.map((r) => r.id).sort(),
        "every event's own data, once",
      );
      const first = sent.find((e) => String(e.shipment_id) === rows[0]!.id)!;
      assert.equal(first.event, "shipment.created");
      assert.equal(typeof first.total, "number");
      assert.equal(first.timestamp, rows[0]!.t, "_timestamp is the event's own time");
    });
  });
  describe("a sequence ending in a batched action", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, CHAIN, { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("resuming the chain leaves no entry of the batched action behind to replay twice", async () => {
      mock.reset();
      mock.route("/reserve", [{ status: 500 }, { status: 500 }]);
      await db.query("INSERT INTO orders_chain (total) VALUES (1), (2)");
      await service.app.dispatcher.waitForIdle();
      const failed = await service.app.dlq.list();
      assert.deepEqual(failed.map((e) => e.reason).sort(), [
        "http_5xx",
        "http_5xx",
        "upstream_failed",
        "upstream_failed",
      ]);

      // The first actions go through when replayed; the batch of the second ones fails.
      mock.route("/report", [{ status: 500 }]);
      const roots = failed.filter((e) => e.reason === "http_5xx").map((e) => e.id);
      await replayDlq({ db, dlq: service.app.dlq, schema: "fq_chain" }, { ids: roots });
      service.app.dispatcher.wake();
      await mock.waitForCalls(1, 10_000, "/report");
      await service.app.dispatcher.waitForIdle();
      const report = mock.callsTo("/report");
      assert.equal(report.length, 1);
      assert.deepEqual(report[0]!.json.items.map((i: { id: number }) => i.id).sort(), [1, 2]);
      const left = await service.app.dlq.list();
      assert.equal(left.length, 1, JSON.stringify(left.map((e) => [e.reason, e.delivery_id])));
      assert.equal(left[0]!.reason, "http_5xx");
      assert.equal(left[0]!.delivery_id, report[0]!.deliveryId, "the batch's entry, keyed by its id");

      // Replaying everything sends that batch once more, and nothing else.
      const result = await replayDlq(
        { db, dlq: service.app.dlq, schema: "fq_chain" },
        { failedAfter: new Date(0) },
      );
      assert.equal(result.replayed, 1);
      service.app.dispatcher.wake();
      await mock.waitForCalls(2, 10_000, "/report");
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callsTo("/report").length, 2);
      assert.equal(mock.callsTo("/report")[1]!.deliveryId, report[0]!.deliveryId);
      assert.deepEqual(await service.app.dlq.list(), []);
    });
  });
});
