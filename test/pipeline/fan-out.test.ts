import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gql, usePipeline } from "../helpers/app.js";

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
  const fx = usePipeline(TOML);

  async function signUp(email: string, country: string): Promise<string> {
    const res = await gql(
      fx.service.url as string,
      `mutation($input: CreateUserInput!) { createUser(input: $input) { id } }`,
      { input: { email, country, created_at: "2025-02-10T12:00:00Z" } },
    );
    assert.equal(res.errors, undefined, JSON.stringify(res.errors));
    await fx.service.app.dispatcher.waitForIdle();
    return res.data.createUser.id;
  }

  const paths = () => fx.mock.calls.map((c) => c.path).sort();

  it("a US user reaches the CRM and analytics", async () => {
    fx.mock.reset();
    await signUp("us@example.com", "US");
    assert.deepEqual(paths(), ["/analytics/signup", "/crm/contacts"]);
    assert.deepEqual(fx.mock.callsTo("/crm/contacts")[0]!.json, { email: "us@example.com", country: "US" });
  });

  it("a German user reaches GDPR (gdpr_required as the boolean true) and analytics", async () => {
    fx.mock.reset();
    const id = await signUp("de@example.com", "DE");
    assert.deepEqual(paths(), ["/analytics/signup", "/gdpr/register"]);
    const gdpr = fx.mock.callsTo("/gdpr/register")[0]!.json;
    assert.deepEqual(gdpr, { email: "de@example.com", country: "DE", gdpr_required: true });
    assert.strictEqual(gdpr.gdpr_required, true);
    const analytics = fx.mock.callsTo("/analytics/signup")[0]!.json;
    assert.equal(String(analytics.user_id), id);
    assert.equal(Date.parse(analytics.signup_date), Date.parse("2025-02-10T12:00:00Z"));
  });

  it("a Japanese user reaches analytics only", async () => {
    fx.mock.reset();
    await signUp("jp@example.com", "JP");
    assert.deepEqual(paths(), ["/analytics/signup"]);
  });
});
