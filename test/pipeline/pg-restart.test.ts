import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { Service } from "../../src/cli/serve.js";
import { MockWebhookServer } from "../../src/testing/index.js";
import { eventually, eventuallyCount, ORDER_TOML, startTestService } from "../helpers/app.js";
import { openTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/db.js";

// Restarting the server needs the local cluster's control command and the rights to use it
// (CI runs as root on a machine with the server installed from Debian's packages).
const canRestart =
  TEST_DATABASE_URL !== undefined &&
  process.getuid?.() === 0 &&
  existsSync("/etc/postgresql") &&
  spawnSync("which", ["pg_ctlcluster"]).status === 0;
const skip = canRestart ? false : "needs TEST_DATABASE_URL and root access to pg_ctlcluster";

function restartPostgres(): void {
  const version = readdirSync("/etc/postgresql")[0] as string;
  const r = spawnSync(
    "pg_ctlcluster",
    ["--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
    {
      encoding: "utf8",
    },
  );
  assert.equal(r.status, 0, r.stderr);
}

const TOML = `
${ORDER_TOML}body = { order_id = "{{ id }}" }

[webhooks.dispatch]
poll_interval = "20ms"
lease = "2s"
`;

describe("PostgreSQL restarted under load", { skip }, () => {
  let db: TestDatabase;
  let mock: MockWebhookServer;
  let service: Service;

  before(async () => {
    db = await openTestDatabase();
    mock = await MockWebhookServer.start({ defaultResponse: { status: 200, delayMs: 20 } });
    const { openPostgres } = await import("../../src/db/pg.js");
    // The service gets its own pool, which sees its connections die with the restart.
    service = await startTestService(await openPostgres(db.url as string), TOML, { RECEIVER: mock.url });
  });
  after(async () => {
    await service?.close();
    await service?.app.db.close();
    await mock?.close();
    await db?.close();
  });

  it("the dispatcher reconnects and nothing is lost", async () => {
    await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 1000) AS g");
    await eventually(() => mock.callCount >= 200, 60_000, "some deliveries before the restart");
    restartPostgres();
    // Writes after the restart are captured and delivered too.
    await eventually(
      async () => {
        try {
          await db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 100) AS g");
          return true;
        } catch {
          return false;
        }
      },
      30_000,
      "the server to accept writes again",
    );
    await eventually(
      () => new Set(mock.calls.map((c) => c.json.order_id)).size === 1100,
      90_000,
      "all 1100 events",
    );
    await eventuallyCount(
      db,
      "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status = 'succeeded'",
      1100,
      60_000,
      "every delivery recorded",
    );
  });
});
