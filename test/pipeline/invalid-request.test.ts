import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// The receiver written literally: a value from ${ENV} would be redacted as a secret in the DLQ.
const toml = (receiver: string) => `
[database]
schema = "fq_invalid"

[[entities]]
name = "Order"
table = "orders_invalid"
[entities.fields]
id = "ID"
city = "String"

[[observers]]
name = "order_city"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "${receiver}/orders/{{ id }}"
headers = { "X-City" = "{{ city }}" }
body = { id = "{{ id }}" }

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
table = "dlq_invalid"
`;

describe("a request that cannot be built", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    service = await startTestService(db, toml(mock.url));
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("is dead-lettered unsent as invalid_request, with the URL as rendered for its event", async () => {
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO orders_invalid (city) VALUES (E'Paris\\r\\nX-Injected: 1') RETURNING id::text",
    );
    await service.app.dispatcher.waitForIdle();
    assert.equal(mock.callCount, 0, "never sent");
    const [entry] = await service.app.dlq.list({ observer: "order_city" });
    assert.equal(entry?.reason, "invalid_request");
    assert.equal(entry?.url, `${mock.url}/orders/${rows[0]!.id}`);
  });
});
