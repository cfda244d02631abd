import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { replayDlq } from "../../src/dlq/replay.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, startTestService } from "../helpers/app.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const NATS_URL = process.env.TEST_NATS_URL;

const toml = (schema: string, dlq: string) => `
[database]
schema = "${schema}"

[[entities]]
name = "Payment"
table = "payments_${schema}"
[entities.fields]
id = "ID"
amount = "Float"

[[observers]]
name = "on_payment_created"
entity = "Payment"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/payments"
body = { payment_id = "{{ id }}", amount = "{{ amount }}" }

[webhooks.retry]
max_attempts = 1

[webhooks.dispatch]
poll_interval = "20ms"

[webhooks.dlq]
${dlq}
`;

describe("dead letters on every backend, end to end", () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let dir: string;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start();
    dir = await mkdtemp(join(tmpdir(), "fraiseql-dlq-"));
  });
  after(async () => {
    await mock?.close();
    await db?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const backends: [string, string, string | false][] = [
    [
      "file",
      `backend = "file"\npath = "${"DIR"}/webhook_dlq.jsonl"\nrotation = "daily"\ncompress = true`,
      false,
    ],
    [
      "nats",
      `backend = "nats"\nurl = "${NATS_URL}"\nstream = "DLQ_E2E_${randomBytes(3).toString("hex").toUpperCase()}"\nbucket = "dlq-e2e-${randomBytes(3).toString("hex")}"`,
      NATS_URL ? false : "needs TEST_NATS_URL",
    ],
  ];

  for (const [name, section, skip] of backends) {
    it(`${name}: a failed delivery is written to the backend, and replay delivers it with its delivery id`, {
      skip,
    }, async () => {
      const service = await startTestService(db, toml(`fq_${name}`, section.replace("DIR", dir)), {
        RECEIVER: mock.url,
      });
      try {
        mock.reset();
        mock.script([{ status: 503 }]);
        await db.query(`INSERT INTO payments_fq_${name} (amount) VALUES (12.5)`);
        await service.app.dispatcher.waitForIdle();
        // The dead letter left the delivery row for the backend.
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM fq_${name}.deliveries WHERE dead_letter IS NOT NULL`,
        );
        assert.equal(rows[0]!.n, 0);
        const entries = await service.app.dlq.list({ observer: "on_payment_created" });
        assert.equal(entries.length, 1);
        assert.equal(entries[0]!.reason, "http_5xx");
        assert.equal(entries[0]!.last_status, 503);
        assert.deepEqual(entries[0]!.payload, { payment_id: 1, amount: 12.5 });
        assert.deepEqual(Object.fromEntries(await service.app.dlq.sizes()), { on_payment_created: 1 });

        mock.reset();
        const result = await replayDlq(
          { db, dlq: service.app.dlq, schema: `fq_${name}` },
          { failedAfter: new Date(Date.now() - 3600_000), filter: { observer: "on_payment_created" } },
        );
        assert.equal(result.replayed, 1);
        service.app.dispatcher.wake();
        await service.app.dispatcher.waitForIdle();
        assert.equal(mock.callCount, 1);
        assert.equal(mock.calls[0]!.deliveryId, entries[0]!.delivery_id);
        assert.deepEqual(await service.app.dlq.list({}), [], "delivered on replay: the entry is resolved");
      } finally {
        await service.close();
      }
    });
  }

  it("file: an entry whose removal failed after a successful replay is removed by the housekeeping", async () => {
    const schema = "fq_file_resolve";
    const service = await startTestService(
      db,
      toml(schema, backends[0]![1].replace("DIR", dir).replace("webhook_dlq", "resolve_dlq")),
      { RECEIVER: mock.url },
    );
    try {
      mock.reset();
      mock.script([{ status: 503 }]);
      await db.query(`INSERT INTO payments_${schema} (amount) VALUES (1)`);
      await service.app.dispatcher.waitForIdle();
      assert.equal((await service.app.dlq.list({})).length, 1);

      // The backend refuses the first removal (say the disk was briefly full).
      const dlq = service.app.dlq;
      const resolve = dlq.resolve.bind(dlq);
      let refused = 0;
      dlq.resolve = async (ids, tx) => {
        if (refused++ === 0) throw new Error("injected: backend unavailable");
        return resolve(ids, tx);
      };
      mock.reset();
      await replayDlq({ db, dlq, schema }, { failedAfter: new Date(Date.now() - 3600_000), filter: {} });
      service.app.dispatcher.wake();
      await service.app.dispatcher.waitForIdle();
      assert.equal(mock.callCount, 1, "delivered on replay");
      const pending = async () => {
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${schema}.deliveries WHERE dlq_resolve_pending`,
        );
        return rows[0]!.n;
      };
      assert.equal(await pending(), 1, "marked until the backend confirms");
      await eventually(async () => (await dlq.list({})).length === 0, 15_000, "the housekeeping's removal");
      await eventually(async () => (await pending()) === 0, 5_000, "the mark cleared");
      assert.ok(refused >= 2);
    } finally {
      await service.close();
    }
  });
});
