import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { Webhook } from "standardwebhooks";
import type { Service } from "../../src/cli/serve.js";
import { decryptPayload } from "../../src/delivery/encryption.js";
import { verifyWebhook } from "../../src/delivery/signing.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const KEY = randomBytes(32).toString("base64");
const SECRET_1 = `whsec_${randomBytes(24).toString("base64")}`;
const SECRET_2 = `whsec_${randomBytes(24).toString("base64")}`;

// The seed's send_user_data, with the listed fields encrypted, signed the Standard Webhooks way
// with two secrets (rotation).
const TOML = `
[[entities]]
name = "User"
[entities.fields]
id = "ID"
email = "String"
ssn = "String"

[[observers]]
name = "send_user_data"
entity = "User"
event = "INSERT"
[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/users"
encryption = { enabled = true, algorithm = "AES-256-GCM", key = "\${WEBHOOK_ENCRYPTION_KEY}", fields = ["email", "ssn"] }
body = { id = "{{ id }}", email = "{{ email }}", ssn = "{{ ssn }}" }

[webhooks.signing]
scheme = "standard"
secrets = ["\${SECRET_1}", "\${SECRET_2}"]

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("seed pattern: encrypted fields, Standard Webhooks signatures", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    service = await startTestService(db, TOML, {
      RECEIVER: mock.url,
      WEBHOOK_ENCRYPTION_KEY: KEY,
      SECRET_1,
      SECRET_2,
    });
    await db.query("INSERT INTO users (email, ssn) VALUES ('ada@example.com', '078-05-1120')");
    await mock.waitForCalls(1, 10_000);
    await service.app.dispatcher.waitForIdle();
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  it("the listed fields arrive encrypted and decrypt to their values; the rest stays clear", () => {
    const body = mock.calls[0]!.json;
    assert.equal(typeof body.id, "number");
    assert.match(body.email, /^enc:v1:/);
    assert.match(body.ssn, /^enc:v1:/);
    assert.ok(!mock.calls[0]!.body.includes("ada@example.com"));
    assert.deepEqual(decryptPayload(body, KEY, ["email", "ssn"]), {
      id: body.id,
      email: "ada@example.com",
      ssn: "078-05-1120",
    });
  });

  it("verifies with the standardwebhooks package, with each of the two secrets alone", () => {
    const call = mock.calls[0]!;
    const headers = {
      "webhook-id": String(call.headers["webhook-id"]),
      "webhook-timestamp": String(call.headers["webhook-timestamp"]),
      "webhook-signature": String(call.headers["webhook-signature"]),
    };
    assert.equal(headers["webhook-id"], call.deliveryId);
    assert.equal(headers["webhook-signature"].split(" ").length, 2);
    for (const secret of [SECRET_1, SECRET_2]) {
      const verified = new Webhook(secret).verify(call.body, headers);
      assert.deepEqual(verified, call.json);
      assert.deepEqual(verifyWebhook(call.body, call.headers, { secret, scheme: "standard" }), { ok: true });
    }
    assert.throws(() =>
      new Webhook(`whsec_${randomBytes(24).toString("base64")}`).verify(call.body, headers),
    );
  });

  it("keeps the key and secrets out of the delivery history and the DLQ", async () => {
    const { rows } = await db.query("SELECT to_jsonb(a)::text AS row FROM fraiseql.delivery_attempts a");
    for (const { row } of rows as { row: string }[]) {
      for (const secret of [KEY, SECRET_1, SECRET_2]) assert.ok(!row.includes(secret));
    }
  });
});
