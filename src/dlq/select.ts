/**
 * The DLQ semantics that backends without a query language (NATS, file) share, as pure functions
 * over the current entries: filtering and ordering for `list`, the merge of a repeated failure into
 * its entry, and which entries `retention` and `max_size` remove. The PostgreSQL backend expresses
 * the same rules in SQL; the contract tests hold all three to them.
 */

import type { DeadLetter, DlqListFilter } from "./types.js";

/** `list`'s limit when none is given. */
export const DEFAULT_LIST_LIMIT = 100;

const time = (iso: string): number => Date.parse(iso);

/** Newest `failed_at` first, then `id` descending, as the PostgreSQL backend orders. */
export function newestFirst(a: DeadLetter, b: DeadLetter): number {
  const byTime = time(b.failed_at) - time(a.failed_at);
  if (byTime !== 0) return byTime;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Oldest `failed_at` first: the order in which `retention` and `max_size` remove entries. */
export function oldestFirst(a: DeadLetter, b: DeadLetter): number {
  return -newestFirst(a, b);
}

/** True when the entry passes every filter that is set (the limit aside). */
export function matchesFilter(entry: DeadLetter, filter: DlqListFilter): boolean {
  if (filter.failedAfter && time(entry.failed_at) < filter.failedAfter.getTime()) return false;
  if (filter.observer !== undefined && entry.observer !== filter.observer) return false;
  if (filter.entity !== undefined && entry.entity !== filter.entity) return false;
  if (filter.reason !== undefined && entry.reason !== filter.reason) return false;
  if (filter.status !== undefined && entry.last_status !== filter.status) return false;
  return true;
}

/** `list` over entries held in memory: filtered, newest first, limited (Default: 100; 0 = all). */
export function selectEntries(entries: Iterable<DeadLetter>, filter: DlqListFilter = {}): DeadLetter[] {
  const chosen = [...entries].filter((e) => matchesFilter(e, filter)).sort(newestFirst);
  const limit = filter.limit ?? DEFAULT_LIST_LIMIT;
  return limit > 0 ? chosen.slice(0, Math.floor(limit)) : chosen;
}

/** Counts per observer, for `fraiseql_dlq_size`. */
export function countByObserver(entries: Iterable<DeadLetter>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of entries) counts.set(e.observer, (counts.get(e.observer) ?? 0) + 1);
  return counts;
}

/**
 * The entry as stored: times in canonical ISO 8601 UTC (`2025-02-10T09:30:00.000Z`) so that they
 * sort as text and read back exactly as the PostgreSQL backend returns them.
 */
export function normalizeEntry(entry: DeadLetter): DeadLetter {
  return {
    ...entry,
    event_id: String(entry.event_id),
    // JSON has no undefined: stored as null, as the PostgreSQL columns would hold it.
    payload: entry.payload === undefined ? null : entry.payload,
    last_status: entry.last_status ?? null,
    last_error: entry.last_error ?? null,
    failed_at: new Date(entry.failed_at).toISOString(),
    replayed_at: entry.replayed_at === null ? null : new Date(entry.replayed_at).toISOString(),
  };
}

/**
 * A delivery that failed again returns to its existing entry: the new failure's fields replace the
 * old ones, while the entry's identity (id, observer, entity, event, event_id) and its replay
 * history (replayed_at, replay_count) stay.
 */
export function mergeFailure(existing: DeadLetter, failure: DeadLetter): DeadLetter {
  return normalizeEntry({
    ...failure,
    id: existing.id,
    observer: existing.observer,
    entity: existing.entity,
    event: existing.event,
    event_id: existing.event_id,
    replayed_at: existing.replayed_at,
    replay_count: existing.replay_count,
  });
}

/** The entry after one more replay at `at`. */
export function withReplay(entry: DeadLetter, at: Date): DeadLetter {
  return { ...entry, replayed_at: at.toISOString(), replay_count: entry.replay_count + 1 };
}

const sizes = new WeakMap<DeadLetter, number>();

/** Size of an entry for `max_size`: the bytes of its JSON text. */
export function entrySize(entry: DeadLetter): number {
  // Backends that keep entries in memory ask again for the same objects at every enforcement.
  let size = sizes.get(entry);
  if (size === undefined) {
    size = Buffer.byteLength(JSON.stringify(entry));
    sizes.set(entry, size);
  }
  return size;
}

/**
 * The entries `enforceLimits` removes: those that failed more than `retention` ms before `now`,
 * then, while the JSON size of the rest exceeds `maxSize` bytes, the oldest of the rest.
 */
export function entriesOverLimits(
  entries: Iterable<DeadLetter>,
  limits: { retention: number; maxSize: number; now: Date },
): DeadLetter[] {
  const cutoff = limits.now.getTime() - limits.retention;
  const sorted = [...entries].sort(oldestFirst);
  const removed: DeadLetter[] = [];
  const kept: DeadLetter[] = [];
  for (const e of sorted) (time(e.failed_at) < cutoff ? removed : kept).push(e);
  let total = kept.reduce((sum, e) => sum + entrySize(e), 0);
  for (const e of kept) {
    if (total <= limits.maxSize) break;
    removed.push(e);
    total -= entrySize(e);
  }
  return removed;
}
