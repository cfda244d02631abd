import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

// A poll interval far longer than the test's timeout: only the NOTIFY can deliver in time.
const TOML = `
[[entities]]
name = "Order"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/orders"

[webhooks.dispatch]
poll_interval = "1h"
`;

describe("waking an idle dispatcher", () => {
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

  it("a write from any SQL client wakes the idle dispatcher through NOTIFY", async () => {
    // Let the dispatcher go idle and raise its flag.
    await new Promise((r) => setTimeout(r, 300));
    const { rows } = await db.query<{ sleeping: boolean }>("SELECT sleeping FROM fraiseql.dispatch_state");
    assert.equal(rows[0]!.sleeping, true);
    for (let i = 1; i <= 3; i++) {
      await db.query("INSERT INTO orders (total) VALUES ($1)", [i]);
      await mock.waitForCalls(i, 10_000);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(mock.callCount, 3);
  });

  it("under load the flag is down, so writes do not NOTIFY", async () => {
    // While the dispatcher is busy with a backlog it keeps the flag down.
    mock.respond(() => ({ status: 200, delayMs: 200 }));
    await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 300) AS g");
    await mock.waitForCalls(10, 10_000);
    const { rows } = await db.query<{ sleeping: boolean }>("SELECT sleeping FROM fraiseql.dispatch_state");
    assert.equal(rows[0]!.sleeping, false);
  });
});
