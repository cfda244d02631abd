import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventuallyCount, ORDER_TOML, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";
import { TcpProxy } from "../helpers/tcp-proxy.js";

const NATS_URL = process.env.TEST_NATS_URL;
const skip = NATS_URL ? false : "needs a NATS server (TEST_NATS_URL)";

/**
 * Waits until `n` dead letters are held on delivery rows (of `observer`, when given): with n > 0
 * dead deliveries whose letter waits for the backend, with 0 none left to write.
 */
async function heldLetters(db: TestDatabase, n: number, what: string, observer?: string): Promise<void> {
  const where = `dead_letter IS NOT NULL${n > 0 ? " AND status = 'dead'" : ""}${observer ? ` AND observer = '${observer}'` : ""}`;
  await eventuallyCount(
    db,
    `SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE ${where}`,
    n,
    n > 0 ? 20_000 : 60_000,
    what,
  );
}

describe("a DLQ backend that is down when a delivery fails", { skip }, () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let proxy: TcpProxy;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start({ defaultResponse: { status: 400 } });
    const target = new URL(NATS_URL as string);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 4222) });
    await proxy.start();
    const tag = randomBytes(3).toString("hex");
    service = await startTestService(
      db,
      `
${ORDER_TOML}body = { order_id = "{{ id }}" }

[[entities]]
name = "Shipment"
[entities.fields]
id = "ID"
carrier = "String"

[[observers]]
name = "on_shipments"
entity = "Shipment"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/shipments"
batch = { size = 2, timeout = "200ms" }

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
backend = "nats"
url = "nats://127.0.0.1:${proxy.port}"
stream = "DLQ_DOWN_${tag.toUpperCase()}"
bucket = "dlq-down-${tag}"
`,
      { RECEIVER: mock.url },
    );
  });
  after(async () => {
    await service?.close();
    await proxy?.stop();
    await mock?.close();
    await db?.close();
  });

  it("keeps the dead letter on the delivery row, and writes it once the backend is back", async () => {
    await proxy.stop();
    await db.query("INSERT INTO orders (total) VALUES (5)");
    await mock.waitForCalls(1, 10_000);
    // Dead, and its letter held in PostgreSQL while NATS is unreachable.
    await heldLetters(db, 1, "the dead letter to be held");
    await proxy.start();
    await heldLetters(db, 0, "the held letter to be written");
    const entries = await service.app.dlq.list({});
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.reason, "http_4xx");
    assert.deepEqual(entries[0]!.payload, { order_id: 1 });
    assert.equal(mock.callCount, 1, "the webhook itself was not sent again");
  });

  it("holds a failed batch's dead letter too (keyed by the batch id, held on a member row)", async () => {
    mock.reset();
    await proxy.stop();
    await db.query("INSERT INTO shipments (carrier) VALUES ('ups'), ('dhl')");
    const [call] = await mock.waitForCalls(1, 10_000, "/shipments");
    await heldLetters(db, 1, "the batch's dead letter to be held", "on_shipments");
    await proxy.start();
    await heldLetters(db, 0, "the held letter to be written");
    const entries = await service.app.dlq.list({ observer: "on_shipments" });
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.delivery_id, call!.deliveryId, "one entry for the batch, under its id");
    assert.equal((entries[0]!.payload as { events: unknown[] }).events.length, 2);
  });
});

describe("starting while the NATS DLQ is unreachable", { skip }, () => {
  it("delivers all the same, and holds dead letters until NATS answers", async () => {
    const db = await openTestDatabase();
    const mock = await MockWebhookServer.start({ defaultResponse: { status: 400 } });
    const proxy = new TcpProxy({ host: "127.0.0.1", port: Number(new URL(NATS_URL as string).port || 4222) });
    await proxy.start();
    const port = proxy.port;
    await proxy.stop();
    const tag = randomBytes(3).toString("hex");
    let service: Service | undefined;
    try {
      service = await startTestService(
        db,
        `
${ORDER_TOML}body = { order_id = "{{ id }}" }

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
backend = "nats"
url = "nats://127.0.0.1:${port}"
stream = "DLQ_START_${tag.toUpperCase()}"
bucket = "dlq-start-${tag}"
`,
        { RECEIVER: mock.url },
      );
      await db.query("INSERT INTO orders (total) VALUES (7)");
      await mock.waitForCalls(1, 10_000);
      await heldLetters(db, 1, "the dead letter to be held");
    } finally {
      await service?.close();
      await mock.close();
      await db.close();
    }
  });
});
