import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// The seed's conditional pattern.
const TOML = `
[[entities]]
name = "Order"
[entities.fields]
id = "ID"
customer_email = "String"
total = "Float"
status = "String"
tracking_number = "String?"

[[observers]]
name = "notify_shipping_update"
entity = "Order"
event = "UPDATE"
condition = "status.changed() && status == 'shipped'"

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/tracking"
body = { order_id = "{{ id }}", tracking_number = "{{ tracking_number }}", customer_email = "{{ customer_email }}" }

[webhooks.dispatch]
poll_interval = "20ms"
`;

const psqlMissing =
  !process.env.TEST_DATABASE_URL || spawnSync("psql", ["--version"]).status !== 0
    ? "needs psql and TEST_DATABASE_URL"
    : false;

describe("seed pattern: status.changed() && status == 'shipped'", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;
  let id: string;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    service = await startTestService(db, TOML, { RECEIVER: mock.url });
    const { rows } = await db.query<{ id: string }>(
      "INSERT INTO orders (customer_email, total, status) VALUES ('a@example.com', 120, 'pending') RETURNING id",
    );
    id = rows[0]!.id;
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
  });

  const settle = () => service.app.dispatcher.waitForIdle();

  it("an SQL update to shipped fires once", async () => {
    await db.query("UPDATE orders SET status = 'shipped', tracking_number = 'TRK-1' WHERE id = $1", [id]);
    await mock.waitForCalls(1, 10_000);
    await settle();
    assert.equal(mock.callCount, 1);
    assert.deepEqual(mock.lastPayload, {
      order_id: Number(id),
      tracking_number: "TRK-1",
      customer_email: "a@example.com",
    });
  });

  it("setting shipped again fires nothing", async () => {
    await db.query("UPDATE orders SET status = 'shipped' WHERE id = $1", [id]);
    await settle();
    assert.equal(mock.callCount, 1);
  });

  it("changing another column fires nothing", async () => {
    await db.query("UPDATE orders SET total = 130 WHERE id = $1", [id]);
    await settle();
    assert.equal(mock.callCount, 1);
  });

  it("a rolled-back update fires nothing", async () => {
    await db.query("UPDATE orders SET status = 'pending' WHERE id = $1", [id]);
    await settle();
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query("UPDATE orders SET status = 'shipped' WHERE id = $1", [id]);
        throw new Error("roll back");
      }),
      /roll back/,
    );
    await settle();
    assert.equal(mock.callCount, 1);
    const { rows } = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.events WHERE new_row->>'status' = 'shipped' AND old_row->>'status' = 'pending'",
    );
    assert.equal(rows[0]!.n, 1, "only the committed transition is in the outbox");
  });

  it("a write from the psql client is observed like any other", { skip: psqlMissing }, async () => {
    const r = spawnSync(
      "psql",
      [
        db.url as string,
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        `UPDATE orders SET status = 'shipped' WHERE id = ${id}`,
      ],
      {
        encoding: "utf8",
      },
    );
    assert.equal(r.status, 0, r.stderr);
    await mock.waitForCalls(2, 10_000);
    await settle();
    assert.equal(mock.callCount, 2);
  });
});
