import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { startTestService } from "../helpers/app.js";
import { runCli } from "../helpers/cli.js";
import { openTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/db.js";

// The command line runs in its own process next to the running service: that needs a server.
const skip = TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)";

const toml = (url: string, receiver: string) => `
[database]
url = "${url}"

[[entities]]
name = "Payment"
[entities.fields]
id = "ID"
amount = "Float"

[[observers]]
name = "on_payment_created"
entity = "Payment"
event = "INSERT"
[[observers.actions]]
url = "${receiver}/payments"
body = { payment_id = "{{ id }}", amount = "{{ amount }}" }

[webhooks.retry]
max_attempts = 2
initial_delay = "10ms"

[webhooks.dispatch]
poll_interval = "20ms"
`;

describe("the seed's remediation path, on the command line", { skip }, () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;
  let dir: string;
  let config: string;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start({ defaultResponse: { status: 503 } });
    dir = await mkdtemp(join(tmpdir(), "fraiseql-replay-"));
    config = join(dir, "fraiseql.toml");
    await writeFile(config, toml(db.url as string, mock.url));
    service = await startTestService(db, toml(db.url as string, mock.url));
  });
  after(async () => {
    await service?.close();
    await mock?.close();
    await db?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("receiver down -> dead letters; fixed -> dlq replay --failed-after --observer delivers every one", async () => {
    await db.query("INSERT INTO payments (amount) SELECT g FROM generate_series(1, 20) AS g");
    await service.app.dispatcher.waitForIdle();
    const original = new Map(mock.calls.map((c) => [c.json.payment_id as number, c.deliveryId]));
    assert.equal(original.size, 20);

    // Debug, as the troubleshooting guide writes it.
    const { rows } = await db.query<{ observer: string; count: string }>(
      "SELECT observer, COUNT(*), MAX(failed_at) FROM webhook_dlq GROUP BY observer ORDER BY COUNT(*) DESC",
    );
    assert.deepEqual(
      rows.map((r) => [r.observer, Number(r.count)]),
      [["on_payment_created", 20]],
    );
    const listed = runCli(["dlq", "list", "--since", "24h", "--json", "--config", config]);
    assert.equal(listed.status, 0, listed.stderr);
    assert.equal(JSON.parse(listed.stdout).length, 20);

    // Fix the receiver, replay.
    mock.reset();
    mock.respond(() => ({ status: 200 }));
    const today = new Date().toISOString().slice(0, 10);
    const replay = runCli([
      "dlq",
      "replay",
      "--failed-after",
      today,
      "--observer",
      "on_payment_created",
      "--config",
      config,
    ]);
    assert.equal(replay.status, 0, replay.stderr);
    assert.match(replay.stdout, /replayed 20 of 20 dead letters/);
    assert.match(replay.stderr, /replayed 20\/20\s*$/, "the progress reaches the end");

    service.app.dispatcher.wake();
    await service.app.dispatcher.waitForIdle();
    assert.equal(mock.callCount, 20);
    for (const call of mock.calls) {
      assert.equal(call.deliveryId, original.get(call.json.payment_id), "the original delivery id");
    }
    const after = runCli(["dlq", "list", "--json", "--config", config]);
    assert.deepEqual(JSON.parse(after.stdout), []);
  });

  it("dlq show and purge", async () => {
    mock.respond(() => ({ status: 400 }));
    await db.query("INSERT INTO payments (amount) VALUES (1)");
    await service.app.dispatcher.waitForIdle();
    await db.query("INSERT INTO payments (amount) VALUES (2)");
    await service.app.dispatcher.waitForIdle();
    const cut = runCli(["dlq", "list", "--limit", "1", "--json", "--config", config]);
    assert.equal(JSON.parse(cut.stdout).length, 1);
    assert.match(cut.stderr, /showing the newest 1 dead letters; there are more/);
    const [entry] = JSON.parse(runCli(["dlq", "list", "--json", "--config", config]).stdout);
    const text = runCli(["dlq", "list", "--config", config]).stdout.split("\n");
    assert.match(text[0]!, /^ID +FAILED +OBSERVER +DELIVERY +REASON +LAST +ATTEMPTS +REQUEST$/);
    assert.ok(text[1]!.startsWith(`${entry.id} `) && text[1]!.includes(` ${entry.delivery_id} `), text[1]);
    assert.equal(text[1]!.indexOf(entry.delivery_id), text[0]!.indexOf("DELIVERY"), "columns line up");
    const shown = runCli(["dlq", "show", entry.id, "--json", "--config", config]);
    assert.equal(shown.status, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).reason, "http_4xx");
    const missing = runCli(["dlq", "show", "dlq_nope", "--config", config]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no dead letter with id "dlq_nope"/);
    const purged = runCli(["dlq", "purge", "--config", config]);
    assert.equal(purged.status, 0);
    assert.match(purged.stdout, /purged 2 dead letters/);
  });
});
