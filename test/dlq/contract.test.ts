import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { DeadLetter, DlqBackend } from "../../src/dlq/types.js";
import {
  type BackendHarness,
  fileHarness,
  natsHarness,
  natsSkipReason,
  postgresHarness,
} from "./fixtures/backends.js";
import { ago, DAY, deadLetter, HOUR, MINUTE } from "./fixtures/dead-letters.js";

// One behaviour, three backends: every test below runs against each of them.
const natsSkip = await natsSkipReason();
const BACKENDS: { name: string; skip: string | false; make: () => Promise<BackendHarness> }[] = [
  { name: "postgresql", skip: false, make: postgresHarness },
  { name: "nats", skip: natsSkip, make: async () => natsHarness() },
  { name: "file", skip: false, make: () => fileHarness() },
];

const ids = (entries: readonly DeadLetter[]) => entries.map((e) => e.id);
const byId = (a: DeadLetter, b: DeadLetter) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

for (const backend of BACKENDS) {
  describe(`DLQ contract: ${backend.name}`, { skip: backend.skip }, () => {
    let harness: BackendHarness | undefined;
    const open = (overrides = {}): Promise<DlqBackend> => {
      if (!harness) throw new Error("harness not ready");
      return harness.open(overrides);
    };
    before(async () => {
      harness = await backend.make();
    });
    after(async () => {
      await harness?.dispose();
    });

    it("reads back every field of a written entry through get and list", async () => {
      const dlq = await open();
      const entry = deadLetter();
      await dlq.write([entry]);
      assert.deepEqual(await dlq.get(entry.id), entry);
      assert.deepEqual(await dlq.list(), [entry]);
      assert.equal(await dlq.get("dlq_00000000000000000000"), undefined);
      await dlq.write([]);
      assert.equal((await dlq.list()).length, 1);
    });

    it("lists newest failed_at first, 100 by default, `limit` of them, or all with limit 0", async () => {
      const dlq = await open();
      const entries = Array.from({ length: 105 }, (_, i) => deadLetter({ failed_at: ago((i + 1) * MINUTE) }));
      const mixed = shuffled(entries);
      await dlq.write(mixed.slice(0, 50));
      await dlq.write(mixed.slice(50));
      const newestFirst = ids(entries);
      assert.deepEqual(ids(await dlq.list()), newestFirst.slice(0, 100));
      assert.deepEqual(ids(await dlq.list({ limit: 3 })), newestFirst.slice(0, 3));
      assert.deepEqual(ids(await dlq.list({ limit: 0 })), newestFirst);
    });

    it("filters by observer, entity, reason, last status and failedAfter (inclusive)", async () => {
      const dlq = await open();
      const a = deadLetter({ failed_at: ago(3 * HOUR) });
      const b = deadLetter({
        observer: "on_payment_created",
        entity: "Payment",
        url: "https://payments.example.com/hooks",
        last_status: 400,
        last_error: 'HTTP 400 Bad Request: {"error":"amount must be positive"}',
        reason: "http_4xx",
        attempts: 1,
        failed_at: ago(2 * HOUR),
      });
      const c = deadLetter({
        last_status: null,
        last_error: "no response within 30000 ms",
        reason: "timeout",
        failed_at: ago(HOUR),
      });
      const d = deadLetter({
        observer: "on_user_registered",
        entity: "User",
        url: "https://crm.example.com/contacts",
        last_status: null,
        last_error: "connect ECONNREFUSED 10.0.0.12:443",
        reason: "connection",
        failed_at: ago(30 * MINUTE),
      });
      await dlq.write([a, b, c, d]);
      assert.deepEqual(ids(await dlq.list({ observer: "on_order_created" })), [c.id, a.id]);
      assert.deepEqual(ids(await dlq.list({ entity: "Payment" })), [b.id]);
      assert.deepEqual(ids(await dlq.list({ reason: "timeout" })), [c.id]);
      assert.deepEqual(ids(await dlq.list({ status: 400 })), [b.id]);
      assert.deepEqual(ids(await dlq.list({ status: 503 })), [a.id]);
      assert.deepEqual(ids(await dlq.list({ failedAfter: new Date(Date.now() - 90 * MINUTE) })), [
        d.id,
        c.id,
      ]);
      assert.deepEqual(ids(await dlq.list({ failedAfter: new Date(a.failed_at) })), [d.id, c.id, b.id, a.id]);
      assert.deepEqual(
        ids(
          await dlq.list({ observer: "on_order_created", failedAfter: new Date(Date.now() - 90 * MINUTE) }),
        ),
        [c.id],
      );
      assert.deepEqual(await dlq.list({ observer: "on_shipment_created" }), []);
    });

    it("returns a delivery that fails again after a replay to its entry, keeping the replay count", async () => {
      const dlq = await open();
      const first = deadLetter({ failed_at: ago(2 * HOUR) });
      const other = deadLetter({ failed_at: ago(3 * HOUR) });
      await dlq.write([first, other]);
      const at = new Date(Date.now() - HOUR);
      assert.deepEqual(await dlq.markReplayed([first.id], at), [
        { ...first, replayed_at: at.toISOString(), replay_count: 1 },
      ]);
      // The replay failed too: the dispatcher writes a new dead letter for the same delivery.
      const again = deadLetter({
        delivery_id: first.delivery_id,
        event_id: first.event_id,
        attempts: 4,
        last_status: 500,
        last_error: "HTTP 500 Internal Server Error",
        failed_at: ago(10 * MINUTE),
        request_headers: { ...first.request_headers, "X-FraiseQL-Attempt": "4" },
      });
      await dlq.write([again]);
      const expected = { ...again, id: first.id, replayed_at: at.toISOString(), replay_count: 1 };
      assert.deepEqual(await dlq.list({ limit: 0 }), [expected, other]);
      assert.deepEqual(await dlq.get(first.id), expected);
      assert.equal(await dlq.get(again.id), undefined);
      assert.deepEqual(await dlq.sizes(), new Map([["on_order_created", 2]]));
    });

    it("counts every replay and ignores ids it does not hold", async () => {
      const dlq = await open();
      const entry = deadLetter();
      const bystander = deadLetter();
      await dlq.write([entry, bystander]);
      await dlq.markReplayed([entry.id], new Date(Date.now() - 20 * MINUTE));
      const second = new Date(Date.now() - 5 * MINUTE);
      const updated = await dlq.markReplayed([entry.id, "dlq_ffffffffffffffffffff"], second);
      assert.deepEqual(updated, [{ ...entry, replayed_at: second.toISOString(), replay_count: 2 }]);
      assert.deepEqual(await dlq.get(entry.id), updated[0]);
      assert.deepEqual(await dlq.get(bystander.id), bystander);
      assert.deepEqual(await dlq.markReplayed([], second), []);
    });

    it("resolve removes the entries of the given deliveries and says how many", async () => {
      const dlq = await open();
      const [a, b, c] = [deadLetter(), deadLetter(), deadLetter()] as [DeadLetter, DeadLetter, DeadLetter];
      await dlq.write([a, b, c]);
      assert.equal(await dlq.resolve([a.delivery_id, b.delivery_id, randomUUID()]), 2);
      assert.deepEqual(ids(await dlq.list()), [c.id]);
      assert.equal(await dlq.get(a.id), undefined);
      assert.equal(await dlq.resolve([]), 0);
      assert.equal(await dlq.resolve([a.delivery_id]), 0);
    });

    it("counts entries per observer", async () => {
      const dlq = await open();
      assert.deepEqual(await dlq.sizes(), new Map());
      await dlq.write([
        deadLetter(),
        deadLetter(),
        deadLetter(),
        deadLetter({ observer: "on_payment_created", entity: "Payment" }),
        deadLetter({ observer: "on_payment_created", entity: "Payment" }),
      ]);
      assert.deepEqual(
        await dlq.sizes(),
        new Map([
          ["on_order_created", 3],
          ["on_payment_created", 2],
        ]),
      );
    });

    it("purge deletes the entries that failed before the date", async () => {
      const dlq = await open();
      const old = deadLetter({ failed_at: ago(10 * DAY) });
      const older = deadLetter({ failed_at: ago(30 * DAY) });
      const recent = deadLetter({ failed_at: ago(HOUR) });
      await dlq.write([old, older, recent]);
      assert.equal(await dlq.purge(new Date(Date.now() - 7 * DAY)), 2);
      assert.deepEqual(await dlq.list(), [recent]);
      assert.equal(await dlq.purge(new Date(Date.now() - 7 * DAY)), 0);
    });

    it("enforceLimits removes entries older than retention", async () => {
      const dlq = await open({ retention: 7 * DAY });
      const expired = [deadLetter({ failed_at: ago(10 * DAY) }), deadLetter({ failed_at: ago(8 * DAY) })];
      const kept = [deadLetter({ failed_at: ago(6 * DAY) }), deadLetter({ failed_at: ago(MINUTE) })];
      await dlq.write([...expired, ...kept]);
      assert.equal(await dlq.enforceLimits(), 2);
      assert.deepEqual((await dlq.list()).sort(byId), [...kept].sort(byId));
      assert.equal(await dlq.enforceLimits(), 0);
    });

    it("enforceLimits removes the oldest entries while the queue is over max_size", async () => {
      const dlq = await open({ maxSize: 6000 });
      // About 1 KB each (incompressible, so every backend measures it alike): ten do not fit in 6 KB.
      const entries = Array.from({ length: 10 }, (_, i) =>
        deadLetter({
          failed_at: ago((i + 1) * MINUTE),
          payload: { order_id: `ord_${i}`, signature_blob: randomBytes(400).toString("hex") },
        }),
      );
      await dlq.write(shuffled(entries));
      const removed = await dlq.enforceLimits();
      assert.ok(removed > 0 && removed < entries.length, `removed ${removed} of ${entries.length}`);
      // What is left is the newest ones, in order.
      assert.deepEqual(ids(await dlq.list({ limit: 0 })), ids(entries.slice(0, entries.length - removed)));
      assert.equal(await dlq.enforceLimits(), 0);
    });
  });
}
