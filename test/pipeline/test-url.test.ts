import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// The seed's local testing section: webhooks sent to a tunnel instead of the receivers written
// in the actions (which this machine cannot reach).
const TOML = `
[database]
schema = "fq_test_url"

[[entities]]
name = "Order"
table = "orders_test_url"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "https://api.example.invalid/notifications/{{ id }}"
body = { order_id = "{{ id }}" }

[webhooks]
test_url = "\${TUNNEL}/webhook"

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("[webhooks] test_url", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    service = await startTestService(db, TOML, { TUNNEL: mock.url });
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("sends every webhook to test_url instead of its action's url, with the action's body", async () => {
    await db.query("INSERT INTO orders_test_url (total) VALUES (10), (20)");
    await mock.waitForCalls(2, 10_000);
    await service.app.dispatcher.waitForIdle();
    assert.deepEqual(
      mock.calls.map((c) => c.path),
      ["/webhook", "/webhook"],
    );
    assert.deepEqual(mock.calls.map((c) => c.json.order_id).sort(), [1, 2]);
    const { rows } = await db.query<{ status: string }>("SELECT status FROM fq_test_url.deliveries");
    assert.deepEqual(
      rows.map((r) => r.status),
      ["succeeded", "succeeded"],
    );
  });
});
