import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { wakeChannel } from "../../src/db/migrate.js";
import { eventually, ORDER_TOML, usePipeline } from "../helpers/app.js";

// A poll interval far longer than the test's timeout: only the NOTIFY can deliver in time.
const TOML = `
${ORDER_TOML}
[webhooks.dispatch]
poll_interval = "1h"
`;

/** The idle flag the capture trigger reads. */
const SLEEPING =
  "SELECT pg_sequence_last_value('fraiseql.dispatch_sleeping') > date_part('epoch', now()) AS sleeping";

describe("waking an idle dispatcher", () => {
  const fx = usePipeline(TOML);

  it("a write from any SQL client wakes the idle dispatcher through NOTIFY", async () => {
    // Let the dispatcher go idle and raise its flag.
    await new Promise((r) => setTimeout(r, 300));
    const { rows } = await fx.db.query<{ sleeping: boolean }>(SLEEPING);
    assert.equal(rows[0]!.sleeping, true);
    for (let i = 1; i <= 3; i++) {
      await fx.db.query("INSERT INTO orders (total) VALUES ($1)", [i]);
      await fx.mock.waitForCalls(i, 10_000);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(fx.mock.callCount, 3);
  });

  it("under load the flag is down, so writes do not NOTIFY", async () => {
    // While the dispatcher is busy with a backlog it keeps the flag down.
    fx.mock.respond(() => ({ status: 200, delayMs: 200 }));
    await fx.db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 300) AS g");
    await fx.mock.waitForCalls(10, 10_000);
    const { rows } = await fx.db.query<{ sleeping: boolean }>(SLEEPING);
    assert.equal(rows[0]!.sleeping, false);
  });
});

describe("a flag left up by a dispatcher that was killed while idle", () => {
  const fx = usePipeline(TOML);

  it("is lowered when a dispatcher starts, so writes under load do not NOTIFY", async () => {
    const dispatcher = fx.service.app.dispatcher;
    await dispatcher.stop();
    await fx.db.query(
      "SELECT setval('fraiseql.dispatch_sleeping', (date_part('epoch', now()) + 3600)::bigint)",
    );
    fx.mock.respond(() => ({ status: 200, delayMs: 200 }));
    await fx.db.query("INSERT INTO orders (total) SELECT g FROM generate_series(1, 300) AS g");
    dispatcher.start();
    // Busy from its first look to its last: it never goes idle, so only the start lowers the flag.
    await fx.mock.waitForCalls(10, 10_000);
    const { rows } = await fx.db.query<{ sleeping: boolean }>(SLEEPING);
    assert.equal(rows[0]!.sleeping, false);
  });
});

describe("the idle flag of a dispatcher that died", () => {
  const fx = usePipeline(TOML);

  it("expires: a few seconds on, writes no longer NOTIFY", async () => {
    await fx.service.app.dispatcher.stop();
    const notified: string[] = [];
    const unlisten = await fx.db.listen(wakeChannel("fraiseql"), (payload) => notified.push(payload));
    try {
      // As a dispatcher raising the flag for one second, then killed.
      await fx.db.query(
        "SELECT setval('fraiseql.dispatch_sleeping', (date_part('epoch', now()) + 1)::bigint)",
      );
      await fx.db.query("INSERT INTO orders (total) VALUES (1)");
      await eventually(() => notified.length === 1, 5_000, "the NOTIFY of a write while the flag holds");
      await new Promise((r) => setTimeout(r, 2100));
      await fx.db.query("INSERT INTO orders (total) VALUES (2)");
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(notified.length, 1);
    } finally {
      await unlisten();
    }
  });
});

describe("the idle flag of a live dispatcher", () => {
  // A one-second lease: heartbeats every 333 ms, and a flag that holds for two seconds unrenewed.
  const fx = usePipeline(TOML.replace('poll_interval = "1h"', 'poll_interval = "1h"\nlease = "1s"'));

  it("is renewed by its heartbeats, so a write long after it went idle still wakes it", async () => {
    await new Promise((r) => setTimeout(r, 3500));
    const { rows } = await fx.db.query<{ sleeping: boolean }>(SLEEPING);
    assert.equal(rows[0]!.sleeping, true);
    await fx.db.query("INSERT INTO orders (total) VALUES (1)");
    await fx.mock.waitForCalls(1, 10_000);
  });
});
