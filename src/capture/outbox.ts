import type { EventKind } from "../config/types.js";
import type { Statement } from "../db/driver.js";
import type { InternalTables } from "../db/tables.js";

/** One captured row change, as read from the outbox. */
export interface CapturedEvent {
  /** Outbox id (bigint as text). */
  readonly id: string;
  readonly entity: string;
  readonly op: EventKind;
  readonly old: Record<string, unknown> | null;
  readonly new: Record<string, unknown> | null;
  readonly changed: readonly string[];
  readonly txid: string;
  /** ISO 8601 UTC time of the change. */
  readonly timestamp: string;
}

export interface EventRow {
  id: string;
  entity: string;
  op: EventKind;
  old_row: Record<string, unknown> | null;
  new_row: Record<string, unknown> | null;
  changed: string[] | null;
  txid: string;
  created_at: Date | string;
}

export function toCapturedEvent(row: EventRow): CapturedEvent {
  const created = row.created_at instanceof Date ? row.created_at : new Date(row.created_at);
  return {
    id: String(row.id),
    entity: row.entity,
    op: row.op,
    old: row.old_row,
    new: row.new_row,
    changed: row.changed ?? [],
    txid: String(row.txid),
    timestamp: created.toISOString(),
  };
}

export const EVENT_COLUMNS = "id, entity, op, old_row, new_row, changed, txid, created_at";

/**
 * Locks up to `limit` events not yet routed to observers, oldest first; other processes skip
 * them, so each event is routed once, and the lock ends with the caller's transaction. Its rows
 * go through {@link toCapturedEvent}.
 */
export function unroutedEventsStatement(t: InternalTables, limit: number): Statement {
  return {
    text: `SELECT ${EVENT_COLUMNS} FROM ${t.events} WHERE routed_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
    params: [limit],
  };
}
