import type { DlqConfig } from "../config/types.js";
import type { Database, Queryable } from "../db/driver.js";
import { quoteIdent } from "../db/tables.js";
import type { DeadLetter, DlqBackend, DlqListFilter } from "./types.js";

interface DlqRow extends Omit<DeadLetter, "failed_at" | "replayed_at" | "event_id" | "last_status"> {
  event_id: string;
  last_status: number | null;
  failed_at: Date | string;
  replayed_at: Date | string | null;
}

const COLUMNS = [
  "id",
  "observer",
  "entity",
  "event",
  "event_id",
  "delivery_id",
  "url",
  "method",
  "request_headers",
  "payload",
  "attempts",
  "last_status",
  "last_error",
  "reason",
  "failed_at",
  "replayed_at",
  "replay_count",
] as const;

function iso(value: Date | string | null): string | null {
  if (value === null) return null;
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

function fromRow(row: DlqRow): DeadLetter {
  return {
    ...row,
    event_id: String(row.event_id),
    failed_at: iso(row.failed_at) as string,
    replayed_at: iso(row.replayed_at),
  };
}

/** The dead letter queue as a table of the application's database (default `public.webhook_dlq`). */
export function postgresDlq(
  db: Database,
  config: Pick<DlqConfig, "table" | "schema" | "retention" | "maxSize">,
): DlqBackend {
  const table = `${quoteIdent(config.schema)}.${quoteIdent(config.table)}`;
  const idx = (suffix: string) => quoteIdent(`${config.table}_${suffix}`);
  return {
    name: "postgresql",
    async ensure(tx: Queryable) {
      await tx.exec(`
        CREATE SCHEMA IF NOT EXISTS ${quoteIdent(config.schema)};
        CREATE TABLE IF NOT EXISTS ${table} (
          id              text        PRIMARY KEY,
          observer        text        NOT NULL,
          entity          text        NOT NULL,
          event           text        NOT NULL,
          event_id        bigint      NOT NULL,
          delivery_id     uuid        NOT NULL,
          url             text        NOT NULL,
          method          text        NOT NULL,
          request_headers jsonb       NOT NULL DEFAULT '{}',
          payload         jsonb,
          attempts        integer     NOT NULL,
          last_status     integer,
          last_error      text,
          reason          text        NOT NULL,
          failed_at       timestamptz NOT NULL DEFAULT now(),
          replayed_at     timestamptz,
          replay_count    integer     NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS ${idx("failed_at_idx")} ON ${table} (failed_at);
        CREATE INDEX IF NOT EXISTS ${idx("observer_idx")} ON ${table} (observer, failed_at);
        CREATE UNIQUE INDEX IF NOT EXISTS ${idx("delivery_idx")} ON ${table} (delivery_id);
      `);
    },
    async write(entries, tx) {
      if (entries.length === 0) return;
      const target = tx ?? db;
      // A delivery that fails again after a replay returns to its own entry, keeping replay_count.
      await target.query(
        `INSERT INTO ${table} (${COLUMNS.join(", ")})
         SELECT ${COLUMNS.map((c) => `x.${c}`).join(", ")}
           FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb) AS x
         ON CONFLICT (delivery_id) DO UPDATE SET
           url = EXCLUDED.url, method = EXCLUDED.method, request_headers = EXCLUDED.request_headers,
           payload = EXCLUDED.payload, attempts = EXCLUDED.attempts, last_status = EXCLUDED.last_status,
           last_error = EXCLUDED.last_error, reason = EXCLUDED.reason, failed_at = EXCLUDED.failed_at`,
        [JSON.stringify(entries)],
      );
    },
    async list(filter: DlqListFilter = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      const add = (sql: string, value: unknown) => {
        params.push(value);
        where.push(sql.replace("?", `$${params.length}`));
      };
      if (filter.failedAfter) add("failed_at >= ?", filter.failedAfter.toISOString());
      if (filter.observer) add("observer = ?", filter.observer);
      if (filter.entity) add("entity = ?", filter.entity);
      if (filter.reason) add("reason = ?", filter.reason);
      if (filter.status !== undefined) add("last_status = ?", filter.status);
      const limit = filter.limit ?? 100;
      const { rows } = await db.query<DlqRow>(
        `SELECT ${COLUMNS.join(", ")} FROM ${table} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
          ORDER BY failed_at DESC, id DESC${limit > 0 ? ` LIMIT ${Math.floor(limit)}` : ""}`,
        params,
      );
      return rows.map(fromRow);
    },
    async get(id) {
      const { rows } = await db.query<DlqRow>(`SELECT ${COLUMNS.join(", ")} FROM ${table} WHERE id = $1`, [
        id,
      ]);
      return rows[0] ? fromRow(rows[0]) : undefined;
    },
    async markReplayed(ids, at) {
      if (ids.length === 0) return [];
      const { rows } = await db.query<DlqRow>(
        `UPDATE ${table} SET replayed_at = $2, replay_count = replay_count + 1
          WHERE id = ANY($1::text[]) RETURNING ${COLUMNS.join(", ")}`,
        [ids, at.toISOString()],
      );
      return rows.map(fromRow);
    },
    async resolve(deliveryIds, tx) {
      if (deliveryIds.length === 0) return 0;
      const { rowCount } = await (tx ?? db).query(
        `DELETE FROM ${table} WHERE delivery_id = ANY($1::uuid[])`,
        [deliveryIds],
      );
      return rowCount;
    },
    async enforceLimits() {
      const { rowCount: expired } = await db.query(
        `DELETE FROM ${table} WHERE failed_at < now() - $1 * interval '1 millisecond'`,
        [config.retention],
      );
      // Over max_size, the oldest entries go first until the table's data fits again.
      const { rows } = await db.query<{ bytes: string }>(
        `SELECT coalesce(sum(pg_column_size(t.*)), 0)::bigint::text AS bytes FROM ${table} t`,
      );
      let removed = expired;
      const excess = Number(rows[0]?.bytes ?? 0) - config.maxSize;
      if (excess > 0) {
        const { rows: cut } = await db.query<{ n: string }>(
          `WITH sized AS (
             SELECT id, pg_column_size(t.*) AS size, sum(pg_column_size(t.*)) OVER (ORDER BY failed_at, id) AS running
               FROM ${table} t
           ), gone AS (
             DELETE FROM ${table} WHERE id IN (SELECT id FROM sized WHERE running - size < $1)
             RETURNING 1
           ) SELECT count(*)::text AS n FROM gone`,
          [excess],
        );
        removed += Number(cut[0]?.n ?? 0);
      }
      return removed;
    },
    async purge(before) {
      const { rowCount } = await db.query(`DELETE FROM ${table} WHERE failed_at < $1`, [
        before.toISOString(),
      ]);
      return rowCount;
    },
    async sizes() {
      const { rows } = await db.query<{ observer: string; n: number }>(
        `SELECT observer, count(*)::int AS n FROM ${table} GROUP BY observer`,
      );
      return new Map(rows.map((r) => [r.observer, r.n]));
    },
    async close() {},
  };
}
