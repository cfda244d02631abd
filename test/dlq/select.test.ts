import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  entriesOverLimits,
  entrySize,
  matchesFilter,
  mergeFailure,
  newestFirst,
  selectEntries,
} from "../../src/dlq/select.js";
import type { DeadLetter } from "../../src/dlq/types.js";
import { DAY, deadLetter } from "./fixtures/dead-letters.js";

const NOW = Date.parse("2025-02-10T12:00:00.000Z");
const OBSERVERS = ["on_order_created", "on_payment_created", "on_user_registered"];

const entryArb: fc.Arbitrary<DeadLetter> = fc
  .record({
    ageMs: fc.integer({ min: 0, max: 20 * DAY }),
    observer: fc.constantFrom(...OBSERVERS),
    status: fc.constantFrom(400, 404, 500, 503, null),
    padding: fc.string({ maxLength: 300 }),
  })
  .map(({ ageMs, observer, status, padding }) =>
    deadLetter({
      observer,
      last_status: status,
      reason: status === null ? "timeout" : status >= 500 ? "http_5xx" : "http_4xx",
      failed_at: new Date(NOW - ageMs).toISOString(),
      payload: { padding },
    }),
  );

describe("DLQ selection (pure)", () => {
  it("list: only matching entries, newest first, at most `limit` (0 = all)", () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { maxLength: 40 }),
        fc.record(
          {
            observer: fc.constantFrom(...OBSERVERS),
            status: fc.constantFrom(400, 500, 503),
            failedAfter: fc.integer({ min: 0, max: 20 * DAY }).map((ms) => new Date(NOW - ms)),
            limit: fc.integer({ min: 0, max: 50 }),
          },
          { requiredKeys: [] },
        ),
        (entries, filter) => {
          const chosen = selectEntries(entries, filter);
          const matching = entries.filter((e) => matchesFilter(e, filter));
          const limit = filter.limit ?? 100;
          assert.equal(chosen.length, limit === 0 ? matching.length : Math.min(limit, matching.length));
          for (const e of chosen) assert.ok(matchesFilter(e, filter));
          for (let i = 1; i < chosen.length; i++)
            assert.ok(newestFirst(chosen[i - 1] as DeadLetter, chosen[i] as DeadLetter) <= 0);
          // What the limit cut off is never newer than what it kept.
          const last = chosen.at(-1);
          if (last) for (const e of matching) if (!chosen.includes(e)) assert.ok(newestFirst(last, e) <= 0);
        },
      ),
    );
  });

  it("limits: removes the expired, then the oldest until the rest fits, and no more", () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { maxLength: 40 }),
        fc.integer({ min: 1, max: 15 * DAY }),
        fc.integer({ min: 0, max: 40_000 }),
        (entries, retention, maxSize) => {
          const removed = entriesOverLimits(entries, { retention, maxSize, now: new Date(NOW) });
          const kept = entries.filter((e) => !removed.includes(e));
          const cutoff = NOW - retention;
          for (const e of kept) assert.ok(Date.parse(e.failed_at) >= cutoff, "an expired entry was kept");
          const keptSize = kept.reduce((sum, e) => sum + entrySize(e), 0);
          assert.ok(keptSize <= maxSize, "what is kept is over max_size");
          const bySize = removed.filter((e) => Date.parse(e.failed_at) >= cutoff);
          for (const gone of bySize)
            for (const e of kept) assert.ok(newestFirst(e, gone) <= 0, "a newer entry went first");
          // The newest entry removed for size would not have fitted.
          const lastRemoved = bySize.at(-1);
          if (lastRemoved) assert.ok(keptSize + entrySize(lastRemoved) > maxSize, "removed more than needed");
        },
      ),
    );
  });

  it("a repeated failure takes the new failure's fields and keeps identity and replays", () => {
    const entry = { ...deadLetter(), replayed_at: "2025-02-10T10:00:00.000Z", replay_count: 2 };
    const failure = deadLetter({
      delivery_id: entry.delivery_id,
      attempts: 5,
      last_status: 502,
      failed_at: "2025-02-10T11:00:00+01:00",
    });
    assert.deepEqual(mergeFailure(entry, failure), {
      ...failure,
      id: entry.id,
      event_id: entry.event_id,
      failed_at: "2025-02-10T10:00:00.000Z",
      replayed_at: entry.replayed_at,
      replay_count: 2,
    });
  });
});
