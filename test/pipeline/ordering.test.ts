import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { usePipeline } from "../helpers/app.js";

const ROWS = 20;
const UPDATES = 50;

const TOML = `
[[entities]]
name = "Stock"
[entities.fields]
id = "ID"
version = "Int"

[[observers]]
name = "stock_changed"
entity = "Stock"
event = "UPDATE"
ordering = "per_key"
[[observers.actions]]
url = "\${RECEIVER}/stock"
body = { id = "{{ id }}", version = "{{ version }}" }

[webhooks.retry]
max_attempts = 12
backoff = "fixed"
initial_delay = "5ms"

[webhooks.dispatch]
poll_interval = "10ms"
`;

/** A small seeded generator, so a failing run can be repeated. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

describe('ordering = "per_key"', () => {
  const fx = usePipeline(TOML);

  it(`${UPDATES} updates to each of ${ROWS} rows, with a receiver failing at random, arrive in commit order per row`, async () => {
    const random = lcg(20250210);
    fx.mock.respond(() => (random() < 0.25 ? { status: 500 } : undefined));
    await fx.db.query(`INSERT INTO stocks (version) SELECT 0 FROM generate_series(1, ${ROWS})`);
    const { rows: ids } = await fx.db.query<{ id: string }>("SELECT id FROM stocks ORDER BY id");
    for (let round = 0; round < UPDATES; round++) {
      for (const { id } of ids)
        await fx.db.query("UPDATE stocks SET version = version + 1 WHERE id = $1", [id]);
    }
    await fx.service.app.dispatcher.waitForIdle(120_000);

    const byRow = new Map<number, { version: number; ok: boolean }[]>();
    for (const call of fx.mock.calls) {
      const list = byRow.get(call.json.id) ?? [];
      list.push({ version: call.json.version, ok: true });
      byRow.set(call.json.id, list);
    }
    assert.equal(byRow.size, ROWS);
    const { rows: dead } = await fx.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status <> 'succeeded'",
    );
    assert.equal(dead[0]!.n, 0, "every delivery succeeded in the end");
    for (const [row, calls] of byRow) {
      const versions = calls.map((c) => c.version);
      for (let i = 1; i < versions.length; i++) {
        assert.ok(
          versions[i]! >= versions[i - 1]!,
          `row ${row}: version ${versions[i]} sent after ${versions[i - 1]}`,
        );
      }
      assert.deepEqual(
        [...new Set(versions)],
        Array.from({ length: UPDATES }, (_, i) => i + 1),
        `row ${row}: every version, in order`,
      );
    }
    assert.ok(fx.mock.callCount > ROWS * UPDATES, "some attempts failed and were retried");
  });
});

describe('ordering = "per_key", with an earlier event not routed yet', () => {
  const fx = usePipeline(TOML);

  it("holds a later delivery of the key until the earlier event is routed and delivered", async () => {
    const dispatcher = fx.service.app.dispatcher;
    await fx.db.query("INSERT INTO stocks (version) VALUES (0)");
    await dispatcher.waitForIdle(10_000);
    await dispatcher.stop();
    // Two updates while nothing runs; the later one is routed as if by another process whose
    // routing write committed first, the earlier one still waits in the outbox.
    await fx.db.query("UPDATE stocks SET version = 1");
    await fx.db.query("UPDATE stocks SET version = 2");
    const { rows: events } = await fx.db.query<{ id: string; stock: number }>(
      `SELECT id::text, (new_row->>'id')::int AS stock FROM fraiseql.events
        WHERE routed_at IS NULL ORDER BY id`,
    );
    assert.equal(events.length, 2);
    const later = events[1]!;
    await fx.db.query(
      `INSERT INTO fraiseql.deliveries (id, event_id, observer, action_index, status, ordering_key)
       VALUES (gen_random_uuid(), $1, 'stock_changed', 0, 'pending', $2)`,
      [later.id, `stock_changed:${later.stock}`],
    );
    await fx.db.query("UPDATE fraiseql.events SET routed_at = now() WHERE id = $1", [later.id]);

    dispatcher.start();
    await dispatcher.waitForIdle(10_000);
    const versions = fx.mock.calls.slice(-2).map((c) => c.json.version);
    assert.deepEqual(versions, [1, 2]);
  });
});
