import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventTimeSql } from "../../src/capture/outbox.js";
import { migrate } from "../../src/db/migrate.js";
import { deliveryId } from "../../src/observers/runtime.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const INSTANCE = "6f1c0a52-3d1e-4a7b-9a0e-2b8f4c1d9e77";

describe("an event's deliveries, found through the primary key (migration 005)", () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase();
    await migrate(db);
  });
  after(() => db?.close());

  /** Inserts an event captured at `at`; returns its id and its time as routing reads it. */
  async function event(at: string): Promise<{ id: string; ms: number }> {
    const { rows } = await db.query<{ id: string; captured: string }>(
      `INSERT INTO fraiseql.events (entity, op, new_row, created_at)
       VALUES ('Order', 'INSERT', '{}'::jsonb, $1::timestamptz)
       RETURNING id::text, ${eventTimeSql("created_at")} AS captured`,
      [at],
    );
    const row = rows[0]!;
    return { id: row.id, ms: Date.parse(row.captured) };
  }

  async function delivery(id: string, eventId: string): Promise<void> {
    await db.query(
      `INSERT INTO fraiseql.deliveries (id, event_id, observer, action_index, status) VALUES ($1::uuid, $2::bigint, 'o', 0, 'pending')`,
      [id, eventId],
    );
  }

  async function found(eventId: string): Promise<string[]> {
    const { rows } = await db.query<{ id: string }>(
      `SELECT d.id::text FROM fraiseql.events e, fraiseql.event_deliveries(e.id, e.created_at) d
        WHERE e.id = $1::bigint ORDER BY d.id`,
      [eventId],
    );
    return rows.map((r) => r.id);
  }

  it("finds every delivery of an event, of the current id layout and of older ones, and no other's", async () => {
    // Microseconds in the capture time, a neighbour in the same millisecond, another a millisecond later.
    const a = await event("2026-11-29 02:06:08.368999+00");
    const b = await event("2026-11-29 02:06:08.368001+00");
    const c = await event("2026-11-29 02:06:08.369+00");
    const ids = (e: { id: string; ms: number }) =>
      [0, 1, 2].map((i) => deliveryId(INSTANCE, e.id, e.ms, `observer_${i}`, i));
    for (const e of [a, b, c]) for (const id of ids(e)) await delivery(id, e.id);
    // Ids written before version 7 (version 8, all hash) and random ones (version 4).
    const v8 = "9b2e4c1a-0f3d-8e21-9c4b-5a6d7e8f9012";
    const v4 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    await delivery(v8, a.id);
    await delivery(v4, a.id);

    assert.deepEqual(await found(a.id), [...ids(a), v8, v4].sort());
    assert.deepEqual(await found(b.id), [...ids(b)].sort());
    assert.deepEqual(await found(c.id), [...ids(c)].sort());
  });

  it("finds them at the ends of the counter and of the 48-bit time", async () => {
    for (const [at, seq] of [
      // Event ids far from the sequence's: counters 1, 2^30 - 1, 0 and 2^18 - 1.
      ["1970-01-01 00:00:00.001+00", 5 * 2 ** 30 + 1],
      ["2026-11-29 02:06:08.368+00", 2 ** 32 + 2 ** 30 - 1],
      ["2026-11-29 02:06:08.368+00", 7 * 2 ** 30],
      ["9999-12-31 23:59:59.999+00", 2 ** 31 + 262_143],
      // Past 2^53, where a JavaScript number is no longer exact.
      ["2026-11-29 02:06:08.368+00", "9223372036854775000"],
    ] as const) {
      const { rows } = await db.query<{ id: string; captured: string }>(
        `INSERT INTO fraiseql.events (id, entity, op, new_row, created_at)
         VALUES ($2::bigint, 'Order', 'INSERT', '{}'::jsonb, $1::timestamptz)
         RETURNING id::text, ${eventTimeSql("created_at")} AS captured`,
        [at, String(seq)],
      );
      const e = rows[0]!;
      const id = deliveryId(INSTANCE, e.id, Date.parse(e.captured), "o", 0);
      await delivery(id, e.id);
      assert.deepEqual(await found(e.id), [id], `${at} #${seq}`);
    }
  });
});
