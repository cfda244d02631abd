import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { internalTables } from "../../src/db/tables.js";
import { deleteRow, insertRow, updateRow } from "../../src/entities/rows.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { gql, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const toml = (async: boolean, name = async ? "async" : "sync", extra = "") => `
[database]
schema = "fq_${name}"

[[entities]]
name = "Order"
table = "orders_${name}"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/slow"
body = { order_id = "{{ id }}" }

[webhooks.dispatch]
async = ${async}
timeout = "10s"
poll_interval = "20ms"
${extra}`;

const CREATE = `mutation { createOrder(input: { total: 10 }) { id } }`;

describe("dispatch modes", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;

  before(async () => {
    db = await openTestDatabase();
    // A receiver that takes 1.5 s to answer.
    mock = await MockWebhookServer.start({ defaultResponse: { status: 200, delayMs: 1500 } });
  });
  after(async () => {
    await mock?.close();
    await db?.close();
  });

  describe("async = true", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, toml(true), { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("the mutation returns before the webhook has been answered", async () => {
      mock.reset();
      const res = await gql(service.url as string, CREATE);
      assert.equal(res.errors, undefined);
      assert.equal(res.extensions?.webhooks, undefined);
      const { rows } = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM fq_async.deliveries WHERE status = 'succeeded'",
      );
      assert.equal(rows[0]!.n, 0, "no delivery had finished when the mutation returned");
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 1);
    });
  });

  describe("async = false", () => {
    let service: Service;
    before(async () => {
      service = await startTestService(db, toml(false), { RECEIVER: mock.url });
    });
    after(() => service?.close());

    it("the mutation waits for its webhook and reports the outcome in extensions", async () => {
      mock.reset();
      const res = await gql(service.url as string, CREATE);
      assert.equal(res.errors, undefined);
      assert.equal(mock.callCount, 1, "the webhook was received before the mutation answered");
      const { deliveries, timedOut } = res.extensions.webhooks;
      assert.equal(timedOut, false);
      assert.equal(deliveries.length, 1);
      assert.equal(deliveries[0].observer, "on_order_created");
      assert.equal(deliveries[0].status, "succeeded");
      assert.equal(deliveries[0].lastStatus, 200);
      assert.equal(deliveries[0].id, mock.calls[0]!.deliveryId);
    });

    it("a write reads the outbox's position before its change is captured: the wait looks only after it", async () => {
      const entity = service.app.config.entities[0]!;
      const outboxSequence = internalTables("fq_sync").eventIds;
      const last = async () =>
        (await db.query<{ id: string }>("SELECT coalesce(max(id), 0)::text AS id FROM fq_sync.events"))
          .rows[0]!.id;
      const before = await last();
      const inserted = await insertRow(db, entity, new Map([["total", 5]]), { outboxSequence });
      assert.equal(inserted.outboxBefore, before);
      const { rows } = await db.query<{ id: string }>(
        "SELECT id::text FROM fq_sync.events WHERE txid = $1::bigint",
        [inserted.txid],
      );
      assert.deepEqual(
        rows.map((r) => r.id),
        [String(BigInt(before) + 1n)],
        "the change's event comes right after",
      );
      // No capture on update and delete here (the observer watches INSERT): the bound is read all the same.
      const updated = await updateRow(db, entity, inserted.id, new Map([["total", 6]]), { outboxSequence });
      assert.equal(updated?.outboxBefore, await last());
      const deleted = await deleteRow(db, entity, inserted.id, { outboxSequence });
      assert.equal(deleted?.outboxBefore, await last());
      assert.equal((await insertRow(db, entity, new Map([["total", 7]]))).outboxBefore, undefined);
      // The two inserts are delivered; let them finish before the next test scripts the receiver.
      await service.app.dispatcher.waitForIdle();
    });

    it("a failed webhook does not undo the committed write", async () => {
      mock.reset();
      mock.script([{ status: 400 }]);
      const res = await gql(service.url as string, CREATE);
      assert.equal(res.errors, undefined);
      const id = res.data.createOrder.id;
      assert.equal(res.extensions.webhooks.deliveries[0].status, "dead");
      assert.equal(res.extensions.webhooks.deliveries[0].reason, "http_4xx");
      const { rows } = await db.query("SELECT id FROM orders_sync WHERE id = $1", [id]);
      assert.equal(rows.length, 1);
    });
  });
  for (const backgroundRetry of [true, false]) {
    describe(`async = false, background_retry = ${backgroundRetry}`, () => {
      let service: Service;
      before(async () => {
        const extra = `background_retry = ${backgroundRetry}
[webhooks.retry]
max_attempts = 3
initial_delay = "${backgroundRetry ? "1s" : "100ms"}"
`;
        service = await startTestService(db, toml(false, `sync_bg_${backgroundRetry}`, extra), {
          RECEIVER: mock.url,
        });
      });
      after(() => service?.close());

      it(
        backgroundRetry
          ? "a failed attempt answers the mutation; its retry goes on in the background"
          : "the mutation waits through the retry",
        async () => {
          mock.reset();
          mock.script([{ status: 500 }, { status: 200 }]);
          const res = await gql(service.url as string, CREATE);
          assert.equal(res.errors, undefined);
          const { deliveries, timedOut } = res.extensions.webhooks;
          assert.equal(timedOut, false);
          assert.equal(deliveries.length, 1);
          if (backgroundRetry) {
            assert.equal(mock.callCount, 1, "answered before the retry");
            assert.equal(deliveries[0].status, "pending");
            assert.equal(deliveries[0].attempts, 1);
            assert.equal(deliveries[0].lastStatus, 500);
            await mock.waitForCalls(2, 10_000);
            await service.app.dispatcher.waitForIdle();
            const { rows } = await db.query<{ status: string }>(
              `SELECT status FROM fq_sync_bg_true.deliveries WHERE id = $1`,
              [deliveries[0].id],
            );
            assert.equal(rows[0]?.status, "succeeded", "the retry succeeded in the background");
          } else {
            assert.equal(mock.callCount, 2, "answered after the retry");
            assert.equal(deliveries[0].status, "succeeded");
            assert.equal(deliveries[0].attempts, 2);
            assert.equal(deliveries[0].lastStatus, 200);
          }
        },
      );
    });
  }
});
