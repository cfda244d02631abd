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
  /** (Default: 100) */
  limit?: number;
}

/**
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
  /** Deletes entries that failed before `before`; returns how many. */
  purge(before: Date): Promise<number>;
  /** Counts per observer, for `fraiseql_dlq_size`. */
  sizes(): Promise<Map<string, number>>;
  close(): Promise<void>;
}
