import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { gql, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// The seed's fan_out_user_registration, as written in the document (URLs pointed at a local receiver).
const TOML = `
[[entities]]
name = "User"
[entities.fields]
id = "ID"
email = "String"
country = "String"
created_at = "DateTime"

[[observers]]
name = "fan_out_user_registration"
entity = "User"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/crm/contacts"
condition = "country == 'US'"
body = { email = "{{ email }}", country = "{{ country }}" }

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/gdpr/register"
condition = "country IN ('DE', 'FR', 'UK')"
body = { email = "{{ email }}", country = "{{ country }}", gdpr_required = true }

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/analytics/signup"
body = { user_id = "{{ id }}", signup_date = "{{ created_at }}" }

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("seed pattern: fan-out routing by data", () => {
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

  async function signUp(email: string, country: string): Promise<string> {
    const res = await gql(
      service.url as string,
      `mutation($input: CreateUserInput!) { createUser(input: $input) { id } }`,
      { input: { email, country, created_at: "2025-02-10T12:00:00Z" } },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    await service.app.dispatcher.waitForIdle();
    return res.data.createUser.id;
  }

  const paths = () => mock.calls.map((c) => c.path).sort();

  it("a US user reaches the CRM and analytics", async () => {
    mock.reset();
    await signUp("us@example.com", "US");
    assert.deepEqual(paths(), ["/analytics/signup", "/crm/contacts"]);
    assert.deepEqual(mock.callsTo("/crm/contacts")[0]!.json, { email: "us@example.com", country: "US" });
  });

  it("a German user reaches GDPR (gdpr_required as the boolean true) and analytics", async () => {
    mock.reset();
    const id = await signUp("de@example.com", "DE");
    assert.deepEqual(paths(), ["/analytics/signup", "/gdpr/register"]);
    const gdpr = mock.callsTo("/gdpr/register")[0]!.json;
    assert.deepEqual(gdpr, { email: "de@example.com", country: "DE", gdpr_required: true });
    assert.strictEqual(gdpr.gdpr_required, true);
    const analytics = mock.callsTo("/analytics/signup")[0]!.json;
    assert.equal(String(analytics.user_id), id);
    assert.equal(Date.parse(analytics.signup_date), Date.parse("2025-02-10T12:00:00Z"));
  });

  it("a Japanese user reaches analytics only", async () => {
    mock.reset();
    await signUp("jp@example.com", "JP");
    assert.deepEqual(paths(), ["/analytics/signup"]);
  });
});
