import type { EntityModel, EventKind } from "../config/types.js";
import type { Queryable } from "../db/driver.js";
import { ident } from "../db/index.js";
import { keyColumn, qualifiedTable, type TableColumns } from "./ddl.js";

/** One row of an entity's table, keyed by column name, as the driver returns it. */
export type EntityRow = Record<string, unknown>;

/** A row written by one statement, with the id of the transaction that wrote it. */
export interface WrittenRow {
  readonly row: EntityRow;
  /** The row's key as text. */
  readonly id: string;
  /** `txid_current()` of the writing transaction, as text: the outbox's `txid` for this change. */
  readonly txid: string;
  readonly op: EventKind;
  /**
   * With {@link WriteOptions.outboxSequence}: the last outbox event id handed out before this
   * write's change was captured, as text ("0" when none ever was). The change's own event has a
   * larger id, so it is found with an index range instead of a scan of the whole outbox.
   */
  readonly outboxBefore?: string;
}

/** Options of {@link insertRow}, {@link updateRow} and {@link deleteRow}. */
export interface WriteOptions {
  /** Columns of the table, as `introspectTable` returns them: only those are read back. */
  readonly columns?: TableColumns | undefined;
  /**
   * The outbox's id sequence (`"fraiseql".events_id_seq`): its last value is read in the same
   * statement (before the AFTER ROW capture trigger takes the next one) into `outboxBefore`.
   */
  readonly outboxSequence?: string | undefined;
}

// Read in the same statement as the write, so the caller learns the transaction id without a
// second round trip. The names are unlikely to clash with a user column.
const TXID_ALIAS = "__fraiseql_txid";
const OUTBOX_ALIAS = "__fraiseql_outbox_before";

/**
 * What a write reads back besides the row: the transaction id, and the outbox's position (the
 * sequence's name is appended to the statement's `params`).
 */
function returning(entity: EntityModel, options: WriteOptions, params: unknown[]): string {
  let list = `RETURNING ${selectList(entity, options.columns)}, txid_current()::text AS ${TXID_ALIAS}`;
  if (options.outboxSequence !== undefined) {
    params.push(options.outboxSequence);
    list += `, coalesce(pg_sequence_last_value($${params.length}::regclass), 0)::text AS ${OUTBOX_ALIAS}`;
  }
  return list;
}

/** Column values to write, keyed by column name; values are already in driver form. */
export type ColumnValues = ReadonlyMap<string, unknown>;

function selectList(entity: EntityModel, columns: TableColumns | undefined): string {
  const key = keyColumn(entity);
  const names = [key, ...entity.fields.map((f) => f.name).filter((n) => n !== key)];
  // Only the declared columns are read: undeclared (possibly large) columns stay in the database.
  return names
    .filter((n) => columns === undefined || columns.has(n))
    .map(ident)
    .join(", ");
}

function written(op: EventKind, entity: EntityModel, row: EntityRow): WrittenRow {
  const txid = String(row[TXID_ALIAS]);
  delete row[TXID_ALIAS];
  const before = row[OUTBOX_ALIAS];
  if (before === undefined) return { row, id: String(row[keyColumn(entity)]), txid, op };
  delete row[OUTBOX_ALIAS];
  return { row, id: String(row[keyColumn(entity)]), txid, op, outboxBefore: String(before) };
}

/** `INSERT ... RETURNING`: one statement, committed by itself unless `db` is a transaction. */
export async function insertRow(
  db: Queryable,
  entity: EntityModel,
  values: ColumnValues,
  options: WriteOptions = {},
): Promise<WrittenRow> {
  const names = [...values.keys()];
  const target = qualifiedTable(entity);
  const params = [...values.values()];
  const back = returning(entity, options, params);
  const sql =
    names.length === 0
      ? `INSERT INTO ${target} DEFAULT VALUES ${back}`
      : `INSERT INTO ${target} (${names.map(ident).join(", ")}) VALUES (${names.map((_, i) => `$${i + 1}`).join(", ")}) ${back}`;
  const { rows } = await db.query<EntityRow>(sql, params);
  return written("INSERT", entity, rows[0]!);
}

/** `UPDATE ... WHERE key = $n RETURNING`. @returns undefined when no row has that key. */
export async function updateRow(
  db: Queryable,
  entity: EntityModel,
  id: string,
  values: ColumnValues,
  options: WriteOptions = {},
): Promise<WrittenRow | undefined> {
  const names = [...values.keys()];
  const sets = names.map((n, i) => `${ident(n)} = $${i + 1}`).join(", ");
  const params = [...values.values(), id];
  const sql =
    `UPDATE ${qualifiedTable(entity)} SET ${sets} WHERE ${ident(keyColumn(entity))} = $${names.length + 1} ` +
    returning(entity, options, params);
  const { rows } = await db.query<EntityRow>(sql, params);
  return rows[0] === undefined ? undefined : written("UPDATE", entity, rows[0]);
}

/** `DELETE ... WHERE key = $1 RETURNING`. @returns the deleted row, or undefined when none. */
export async function deleteRow(
  db: Queryable,
  entity: EntityModel,
  id: string,
  options: WriteOptions = {},
): Promise<WrittenRow | undefined> {
  const params: unknown[] = [id];
  const sql = `DELETE FROM ${qualifiedTable(entity)} WHERE ${ident(keyColumn(entity))} = $1 ${returning(entity, options, params)}`;
  const { rows } = await db.query<EntityRow>(sql, params);
  return rows[0] === undefined ? undefined : written("DELETE", entity, rows[0]);
}

/** One row by key, or undefined. */
export async function getRow(
  db: Queryable,
  entity: EntityModel,
  id: string,
  columns?: TableColumns,
): Promise<EntityRow | undefined> {
  const { rows } = await db.query<EntityRow>(
    `SELECT ${selectList(entity, columns)} FROM ${qualifiedTable(entity)} WHERE ${ident(keyColumn(entity))} = $1`,
    [id],
  );
  return rows[0];
}

/** A page of rows ordered by key, so pages are stable. */
export async function listRows(
  db: Queryable,
  entity: EntityModel,
  page: { limit: number; offset: number },
  columns?: TableColumns,
): Promise<EntityRow[]> {
  const { rows } = await db.query<EntityRow>(
    `SELECT ${selectList(entity, columns)} FROM ${qualifiedTable(entity)} ORDER BY ${ident(keyColumn(entity))} LIMIT $1 OFFSET $2`,
    [page.limit, page.offset],
  );
  return rows;
}
