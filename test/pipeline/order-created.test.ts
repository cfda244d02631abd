import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { gql, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";
import { python3Missing, seedVerify } from "../helpers/seed-receiver.js";

// The seed's first pattern, as a user writes it in fraiseql.toml.
const TOML = `
[[entities]]
name = "Order"
[entities.fields]
id = "ID"
customer_email = "String"
total = "Float"
status = "String"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/notifications"
method = "POST"
headers = { Authorization = "Bearer \${WEBHOOK_API_KEY}" }
body = { event = "order.created", order_id = "{{ id }}", customer_email = "{{ customer_email }}", total = "{{ total }}", timestamp = "{{ _timestamp }}" }

[webhooks.signing]
enabled = true
algorithm = "sha256"
secret = "\${WEBHOOK_SECRET}"
header = "X-FraiseQL-Signature"
timestamp_header = "X-FraiseQL-Timestamp"

[webhooks.dispatch]
poll_interval = "20ms"
`;

const SECRET = "order-secret-0123456789";
const API_KEY = "api-key-from-env-42";

describe("seed pattern: order created -> signed webhook", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start({ secret: SECRET });
    service = await startTestService(db, TOML, {
      RECEIVER: mock.url,
      WEBHOOK_API_KEY: API_KEY,
      WEBHOOK_SECRET: SECRET,
    });
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("createOrder through GraphQL sends exactly one POST with the rendered, signed body", async () => {
    const res = await gql(
      service.url as string,
      `mutation { createOrder(input: { customer_email: "user@example.com", total: 99.99, status: "pending" }) { id total } }`,
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    const id = res.data.createOrder.id as string;
    await mock.waitForCalls(1, 10_000);
    await service.app.dispatcher.waitForIdle();
    assert.equal(mock.callCount, 1);
    const call = mock.calls[0]!;
    assert.equal(call.method, "POST");
    assert.equal(call.path, "/notifications");
    assert.equal(call.headers.authorization, `Bearer ${API_KEY}`);
    assert.equal(call.headers["content-type"], "application/json");
    assert.deepEqual(Object.keys(call.json).sort(), [
      "customer_email",
      "event",
      "order_id",
      "timestamp",
      "total",
    ]);
    assert.equal(call.json.event, "order.created");
    assert.equal(String(call.json.order_id), id);
    assert.equal(call.json.customer_email, "user@example.com");
    assert.equal(call.json.total, 99.99);
    assert.match(call.json.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.ok(Math.abs(Date.parse(call.json.timestamp) - Date.now()) < 60_000);
    assert.equal(call.attempt, 1);
    assert.match(call.deliveryId ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(call.signatureValid, true);
    assert.match(String(call.headers["x-fraiseql-signature"]), /^sha256=[0-9a-f]{64}$/);
    assert.match(String(call.headers["x-fraiseql-timestamp"]), /^\d{10}$/);
  });

  it("the receiver code in FraiseQL's documentation verifies the signature unchanged", {
    skip: python3Missing,
  }, () => {
    const call = mock.calls[0]!;
    const signature = String(call.headers["x-fraiseql-signature"]);
    const timestamp = String(call.headers["x-fraiseql-timestamp"]);
    const verdicts = seedVerify([
      { payload: call.body, signature, timestamp, secret: SECRET },
      { payload: call.body.replace("99.99", "9.99"), signature, timestamp, secret: SECRET },
      { payload: call.body, signature, timestamp, secret: "wrong-secret" },
    ]);
    assert.deepEqual(verdicts, [true, false, false]);
  });

  it("records the attempt in the delivery history", async () => {
    const { rows } = await db.query<{ status: number; outcome: string; attempt: number }>(
      "SELECT a.status, a.outcome, a.attempt FROM fraiseql.delivery_attempts a",
    );
    assert.deepEqual(rows, [{ status: 200, outcome: "success", attempt: 1 }]);
  });

  it("serve exposes the seed's metrics at /metrics on its own port", async () => {
    const res = await fetch(`${service.url}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^fraiseql_webhook_total\{observer="on_order_created"\} 1$/m);
    assert.match(
      text,
      /^fraiseql_webhook_duration_seconds_count\{observer="on_order_created",status="success"\} 1$/m,
    );
  });
});
