import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createUndiciSender, type HttpSender } from "../../src/delivery/http.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const RATE = 20;
const BURST = 20;

const toml = (schema: string, secondReceiver: boolean) => `
[database]
schema = "${schema}"

[[entities]]
name = "Order"
table = "orders_${schema}"
[entities.fields]
id = "ID"
region = "String"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
execution = "parallel"
[[observers.actions]]
url = "\${A}/orders"
condition = "region == 'a'"
body = { id = "{{ id }}" }
${
  secondReceiver
    ? `[[observers.actions]]
url = "\${B}/orders"
condition = "region == 'b'"
body = { id = "{{ id }}" }`
    : ""
}

[webhooks.retry]
max_attempts = 5
initial_delay = "10ms"
max_delay = "5s"

[webhooks.rate_limiting]
enabled = true
max_per_second = ${RATE}
burst = ${BURST}

[webhooks.dispatch]
poll_interval = "20ms"
`;

/** A real sender that notes when each request to each origin left. */
function recordingSender(): HttpSender & { sent: Map<string, number[]> } {
  const inner = createUndiciSender();
  const sent = new Map<string, number[]>();
  return {
    sent,
    send(attempt) {
      const origin = new URL(attempt.url).origin;
      sent.set(origin, [...(sent.get(origin) ?? []), Date.now()]);
      return inner.send(attempt);
    },
    close: () => inner.close(),
  };
}

/** Asserts no window of time saw more requests leave than the bucket allows (1 of slack for ms rounding). */
function assertWithinBucket(times: readonly number[]): void {
  const t = [...times].sort((a, b) => a - b);
  for (let i = 0; i < t.length; i++) {
    for (let j = i; j < t.length; j++) {
      const allowed = BURST + (RATE * (t[j]! - t[i]!)) / 1000 + 1;
      assert.ok(j - i + 1 <= allowed, `${j - i + 1} requests within ${t[j]! - t[i]!} ms`);
    }
  }
}

describe("rate limiting", () => {
  let db: TestDatabase;
  let a: MockWebhookServer;
  let b: MockWebhookServer;

  before(async () => {
    db = await openTestDatabase();
    a = await MockWebhookServer.start();
    b = await MockWebhookServer.start();
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await db?.close();
  });

  it(`100 events at ${RATE}/s with burst ${BURST} never run ahead of the bucket and take about 4 s`, async () => {
    const sender = recordingSender();
    const service = await startTestService(db, toml("fq_rl1", false), { A: a.url, B: b.url }, { sender });
    try {
      a.reset();
      await db.query("INSERT INTO orders_fq_rl1 (region) SELECT 'a' FROM generate_series(1, 100)");
      await service.app.dispatcher.waitForIdle(60_000);
      assert.equal(a.callCount, 100);
      const times = sender.sent.get(a.url) ?? [];
      assertWithinBucket(times);
      const first = Math.min(...times);
      const last = Math.max(...times);
      assert.ok(last - first >= ((100 - BURST) / RATE) * 1000 - 100, `took ${last - first} ms`);
    } finally {
      await service.close();
    }
  });

  it("two endpoints are limited independently", async () => {
    const sender = recordingSender();
    const service = await startTestService(db, toml("fq_rl2", true), { A: a.url, B: b.url }, { sender });
    try {
      a.reset();
      b.reset();
      await db.query(
        "INSERT INTO orders_fq_rl2 (region) SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 80) AS g",
      );
      await service.app.dispatcher.waitForIdle(60_000);
      assert.equal(a.callCount, 40);
      assert.equal(b.callCount, 40);
      assertWithinBucket(sender.sent.get(a.url) ?? []);
      assertWithinBucket(sender.sent.get(b.url) ?? []);
      // Together they sent faster than one bucket allows: each had its own.
      const all = [...(sender.sent.get(a.url) ?? []), ...(sender.sent.get(b.url) ?? [])].sort(
        (x, y) => x - y,
      );
      const span = all[all.length - 1]! - all[0]!;
      assert.ok(
        80 > BURST + (RATE * span) / 1000 + 1,
        `80 requests in ${span} ms: more than one bucket's worth`,
      );
    } finally {
      await service.close();
    }
  });

  it("a receiver answering 429 with Retry-After: 2 gets nothing for 2 s", async () => {
    const service = await startTestService(db, toml("fq_rl3", false), { A: a.url, B: b.url });
    try {
      a.reset();
      a.script([{ status: 429, headers: { "Retry-After": "2" } }]);
      await db.query("INSERT INTO orders_fq_rl3 (region) VALUES ('a')");
      const [limited] = await a.waitForCalls(1, 10_000);
      // Once the 429 has come back (its attempt is recorded)...
      await eventually(async () => {
        const { rows } = await db.query("SELECT 1 FROM fq_rl3.delivery_attempts WHERE status = 429");
        return rows.length > 0;
      });
      // More work for the same endpoint right after the 429: it waits too.
      await db.query("INSERT INTO orders_fq_rl3 (region) SELECT 'a' FROM generate_series(1, 4)");
      await service.app.dispatcher.waitForIdle(60_000);
      const later = a.calls.slice(1);
      assert.equal(later.length, 5, "the limited delivery's retry and the four others");
      const gap = Math.min(...later.map((c) => c.receivedAt)) - limited!.receivedAt;
      assert.ok(gap >= 1950, `next request ${gap} ms after the 429`);
    } finally {
      await service.close();
    }
  });
});
