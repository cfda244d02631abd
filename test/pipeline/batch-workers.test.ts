import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, startTestService } from "../helpers/app.js";
import { openTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/db.js";

// Several dispatchers on one database: that needs a server. CI always sets TEST_DATABASE_URL.
const skip = TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)";

const config = (schema: string, size: number, timeout: string) => `
[database]
schema = "${schema}"

[[entities]]
name = "Order"
table = "orders_${schema}"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "orders_batched"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/batch"
batch = { size = ${size}, timeout = "${timeout}" }
body = { ids = [{ id = "{{ id }}" }] }

[webhooks.retry]
max_attempts = 100
initial_delay = "50ms"
max_delay = "200ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("batches with several dispatchers on one database", { skip }, () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
  });
  after(async () => {
    await mock?.close();
    await db?.close();
  });

  async function start(text: string, n: number): Promise<Service[]> {
    const services: Service[] = [];
    for (let i = 0; i < n; i++) services.push(await startTestService(db, text, { RECEIVER: mock.url }));
    return services;
  }

  it("a batch being retried is never split: one request per batch id and attempt", async () => {
    mock.reset();
    let failing = true;
    mock.respond(() => (failing ? { status: 503 } : undefined));
    const services = await start(config("fq_bw_retry", 20, "300ms"), 3);
    try {
      await db.query("INSERT INTO orders_fq_bw_retry (total) SELECT g FROM generate_series(1, 300) AS g");
      await mock.waitForCalls(40, 20_000);
      failing = false;
      await eventually(
        async () =>
          (
            await db.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM fq_bw_retry.deliveries WHERE status = 'succeeded'",
            )
          ).rows[0]?.n === 300,
        60_000,
        "300 deliveries to succeed",
      );
      const requests = new Map<string, number[][]>();
      for (const call of mock.calls) {
        const key = `${call.deliveryId} #${call.attempt}`;
        const ids = (call.json.ids as { id: number }[]).map((x) => x.id);
        requests.set(key, [...(requests.get(key) ?? []), ids]);
      }
      const split = [...requests].filter(([, sent]) => sent.length > 1);
      assert.deepEqual(split, [], "no batch id and attempt sent twice");
      const sent = new Set(mock.calls.flatMap((c) => (c.json.ids as { id: number }[]).map((x) => x.id)));
      assert.equal(sent.size, 300);
    } finally {
      for (const s of services) await s.close();
    }
  });
});
