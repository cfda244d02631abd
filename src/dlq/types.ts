import type { Queryable } from "../db/driver.js";

/** A delivery that will not be retried any more (SPEC §8). Field names are the column names. */
export interface DeadLetter {
  /** Stable id of the entry (text). */
  readonly id: string;
  readonly observer: string;
  readonly entity: string;
  readonly event: string;
  readonly event_id: string;
  readonly delivery_id: string;
  readonly url: string;
  readonly method: string;
  /** Headers as sent, secrets redacted. */
  readonly request_headers: Record<string, string>;
  /** The body as rendered (before encryption), secrets redacted. */
  readonly payload: unknown;
  readonly attempts: number;
  readonly last_status: number | null;
  readonly last_error: string | null;
  /** Why it was dead-lettered: http_4xx, http_5xx, timeout, connection, invalid_request, upstream_failed, ... */
  readonly reason: string;
  /** ISO 8601 */
  readonly failed_at: string;
  readonly replayed_at: string | null;
  readonly replay_count: number;
}

export interface DlqListFilter {
  /** Only entries that failed at or after this time. */
  failedAfter?: Date;
  observer?: string;
  entity?: string;
  reason?: string;
  /** Only entries whose last HTTP status is this. */
  status?: number;
  /** (Default: 100; 0 means no limit) */
  limit?: number;
}

/**
 * Life of an entry: `write` puts it in (a delivery that fails again after a replay returns to its
 * own entry, matched by `delivery_id`, keeping `replay_count` and `replayed_at`); `markReplayed`
 * records a replay (replayed_at = now, replay_count + 1) while the delivery is queued again;
 * `resolve` removes the entries of replayed deliveries that then succeeded. `list` returns the
 * newest `failed_at` first.
 *
 * One interface, one file per backend. `write` may receive the transaction that settles the
 * delivery: a backend inside the same database writes in it, so the dead letter and the
 * delivery's final state commit together.
 */
export interface DlqBackend {
  readonly name: "postgresql" | "nats" | "file";
  /** Creates tables/streams/files as needed. Called by migrate. */
  ensure(tx: Queryable): Promise<void>;
  write(entries: readonly DeadLetter[], tx?: Queryable): Promise<void>;
  list(filter?: DlqListFilter): Promise<DeadLetter[]>;
  get(id: string): Promise<DeadLetter | undefined>;
  /** Records a replay of these entries (by entry id); returns the entries as updated. */
  markReplayed(ids: readonly string[], at: Date): Promise<DeadLetter[]>;
  /** Removes the entries of these deliveries (replayed and then delivered); returns how many. */
  resolve(deliveryIds: readonly string[], tx?: Queryable): Promise<number>;
  /** Enforces `retention` and `max_size`, oldest first; returns how many entries were removed. */
  enforceLimits(): Promise<number>;
  /** Deletes entries that failed before `before`; returns how many. */
  purge(before: Date): Promise<number>;
  /** Counts per observer, for `fraiseql_dlq_size`. */
  sizes(): Promise<Map<string, number>>;
  close(): Promise<void>;
}
