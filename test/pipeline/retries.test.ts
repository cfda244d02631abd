import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import { usePipeline } from "../helpers/app.js";

const TOML = `
[[entities]]
name = "Payment"
[entities.fields]
id = "ID"
amount = "Float"

[[observers]]
name = "on_payment_created"
entity = "Payment"
event = "INSERT"

[[observers.actions]]
url = "\${RECEIVER}/payments"
body = { payment_id = "{{ id }}", amount = "{{ amount }}" }
timeout = "300ms"

[webhooks.retry]
max_attempts = 3
backoff = "exponential"
initial_delay = "20ms"
max_delay = "200ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

interface DlqRow {
  observer: string;
  entity: string;
  event: string;
  delivery_id: string;
  attempts: number;
  last_status: number | null;
  reason: string;
  payload: { payment_id: number; amount: number };
}

describe("retries and the dead letter queue", () => {
  const fx = usePipeline(TOML);
  beforeEach(async () => {
    await fx.service.app.dispatcher.waitForIdle();
    fx.mock.reset();
  });

  async function pay(amount: number): Promise<string> {
    const { rows } = await fx.db.query<{ id: string }>(
      "INSERT INTO payments (amount) VALUES ($1) RETURNING id",
      [amount],
    );
    return rows[0]!.id;
  }

  async function dlqFor(paymentId: string): Promise<DlqRow[]> {
    const { rows } = await fx.db.query<DlqRow>(
      "SELECT observer, entity, event, delivery_id::text, attempts, last_status, reason, payload FROM webhook_dlq WHERE (payload->>'payment_id') = $1",
      [paymentId],
    );
    return rows;
  }

  it("500, 500, 200: three requests, one delivery id, attempts 1, 2, 3", async () => {
    fx.mock.script([{ status: 500 }, { status: 500 }, { status: 200 }]);
    const id = await pay(10);
    await fx.mock.waitForCalls(3, 10_000);
    await fx.service.app.dispatcher.waitForIdle();
    assert.equal(fx.mock.callCount, 3);
    assert.deepEqual(
      fx.mock.calls.map((c) => c.attempt),
      [1, 2, 3],
    );
    assert.equal(new Set(fx.mock.calls.map((c) => c.deliveryId)).size, 1);
    assert.deepEqual(await dlqFor(id), []);
    const { rows } = await fx.db.query<{ status: number }>(
      "SELECT status FROM fraiseql.delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
      [fx.mock.calls[0]!.deliveryId],
    );
    assert.deepEqual(
      rows.map((r) => r.status),
      [500, 500, 200],
    );
  });

  it("400: one request and a DLQ row at once", async () => {
    fx.mock.script([{ status: 400, body: "bad payload" }]);
    const id = await pay(20);
    await fx.mock.waitForCalls(1, 10_000);
    await fx.service.app.dispatcher.waitForIdle();
    assert.equal(fx.mock.callCount, 1);
    const dead = await dlqFor(id);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.observer, "on_payment_created");
    assert.equal(dead[0]!.entity, "Payment");
    assert.equal(dead[0]!.event, "INSERT");
    assert.equal(dead[0]!.delivery_id, fx.mock.calls[0]!.deliveryId);
    assert.equal(dead[0]!.attempts, 1);
    assert.equal(dead[0]!.last_status, 400);
    assert.equal(dead[0]!.reason, "http_4xx");
    assert.deepEqual(dead[0]!.payload, { payment_id: Number(id), amount: 20 });
  });

  it("a receiver that never answers gets max_attempts tries and a DLQ row", async () => {
    fx.mock.script([{ hang: true }, { hang: true }, { hang: true }]);
    const id = await pay(30);
    await fx.mock.waitForCalls(3, 10_000);
    await fx.service.app.dispatcher.waitForIdle();
    assert.equal(fx.mock.callCount, 3);
    const dead = await dlqFor(id);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.attempts, 3);
    assert.equal(dead[0]!.reason, "timeout");
    assert.equal(dead[0]!.last_status, null);
  });

  it("the documented DLQ query works as written", async () => {
    const { rows } = await fx.db.query<{ observer: string; count: string }>(
      "SELECT observer, COUNT(*), MAX(failed_at) FROM webhook_dlq GROUP BY observer ORDER BY COUNT(*) DESC",
    );
    assert.deepEqual(
      rows.map((r) => [r.observer, Number(r.count)]),
      [["on_payment_created", 2]],
    );
    const recent = await fx.db.query(
      "SELECT * FROM webhook_dlq WHERE failed_at > NOW() - INTERVAL '24 hours' ORDER BY failed_at DESC",
    );
    assert.equal(recent.rows.length, 2);
  });
});
