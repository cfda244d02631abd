import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, gql, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// Port and receiver written literally: values from ${ENV} would be redacted as secrets in the DLQ.
const toml = (receiver: MockWebhookServer, webhooks: string) => `
[server]
max_depth = 1

[[entities]]
name = "Tenant"
[entities.fields]
id = "ID"
host = "String"

[[entities]]
name = "Note"
[entities.fields]
id = "ID"
text = "String"

[[observers]]
name = "tenant_hook"
entity = "Tenant"
event = "INSERT"
[[observers.actions]]
url = "http://{{ host }}:${receiver.port}/tenant"
body = { host = "{{ host }}" }

[[observers]]
name = "tenant_hook_with_port"
entity = "Tenant"
event = "INSERT"
condition = "host == '127.0.0.1:${receiver.port}'"
[[observers.actions]]
url = "http://{{ host }}/x"

[[observers]]
name = "note_hook"
entity = "Note"
event = "INSERT"
[[observers.actions]]
url = "${receiver.url}/notes"
body = { text = "{{ text }}" }

[webhooks]
max_payload_size = "200B"
${webhooks}

[webhooks.retry]
max_attempts = 3
initial_delay = "10ms"
max_delay = "10ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

interface Letter {
  observer: string;
  reason: string;
  attempts: number;
  last_error: string | null;
  url: string;
}

describe("end to end: outbound protection in the pipeline", () => {
  let receiver: MockWebhookServer;
  let db: TestDatabase;
  let service: Service;

  const letters = async (observer: string) =>
    (
      await db.query<Letter>(
        "SELECT observer, reason, attempts, last_error, url FROM webhook_dlq WHERE observer = $1",
        [observer],
      )
    ).rows;

  before(async () => {
    receiver = await MockWebhookServer.start();
  });
  after(async () => {
    await service?.close();
    await db?.close();
    await receiver?.close();
  });

  it("a row whose host is 127.0.0.1 is dead-lettered as invalid_request, never sent, never retried", async () => {
    db = await openTestDatabase();
    service = await startTestService(db, toml(receiver, ""));
    await db.query("INSERT INTO tenants (host) VALUES ($1), ($2)", [
      "127.0.0.1",
      `127.0.0.1:${receiver.port}`,
    ]);
    await eventually(async () => (await letters("tenant_hook")).length === 2, 15_000, "two dead letters");
    await eventually(
      async () => (await letters("tenant_hook_with_port")).length === 1,
      15_000,
      "a dead letter",
    );
    await service.app.dispatcher.waitForIdle();

    const plain = (await letters("tenant_hook")).find(
      (l) => l.url === `http://127.0.0.1:${receiver.port}/tenant`,
    );
    assert.ok(plain, JSON.stringify(await letters("tenant_hook")));
    assert.equal(plain.reason, "invalid_request");
    assert.equal(plain.attempts, 1);
    assert.match(plain.last_error ?? "", /refused to connect to 127\.0\.0\.1: loopback address/);
    assert.match(plain.last_error ?? "", /allowed_hosts/);

    // `http://{{ host }}/x` with "127.0.0.1:<port>" in the row: the value is percent-encoded
    // (":" becomes %3A), so it can only ever be a host name, and this one is not a valid URL.
    const [withPort] = await letters("tenant_hook_with_port");
    assert.equal(withPort?.reason, "invalid_request");
    assert.equal(receiver.callsTo("/tenant").length + receiver.callsTo("/x").length, 0);
  });

  it("a rendered body over max_payload_size is dead-lettered as invalid_request; a small one is sent", async () => {
    await db.query("INSERT INTO notes (text) VALUES ($1), ($2)", ["short", "y".repeat(500)]);
    await eventually(async () => (await letters("note_hook")).length === 1, 15_000, "a dead letter");
    await receiver.waitForCalls(1, 10_000, "/notes");
    await service.app.dispatcher.waitForIdle();
    const [letter] = await letters("note_hook");
    assert.equal(letter?.reason, "invalid_request");
    assert.match(letter?.last_error ?? "", /over \[webhooks\] max_payload_size \(200 bytes\)/);
    assert.deepEqual(
      receiver.callsTo("/notes").map((c) => c.json),
      [{ text: "short" }],
    );
  });

  it("[server] max_depth reaches the GraphQL endpoint of serve", async () => {
    const res = await gql(service.url as string, "{ tenants { id } }");
    assert.match(res.errors?.[0]?.message ?? "", /nested 2 fields deep; the limit is 1/);
  });

  it("the same row is delivered once 127.0.0.1 is in allowed_hosts", async () => {
    await service.close();
    await db.close();
    db = await openTestDatabase();
    service = await startTestService(db, toml(receiver, 'allowed_hosts = ["127.0.0.1"]'));
    await db.query("INSERT INTO tenants (host) VALUES ($1)", ["127.0.0.1"]);
    const [call] = await receiver.waitForCalls(1, 10_000, "/tenant");
    assert.deepEqual(call?.json, { host: "127.0.0.1" });
    await service.app.dispatcher.waitForIdle();
    assert.deepEqual(await letters("tenant_hook"), []);
  });
});
