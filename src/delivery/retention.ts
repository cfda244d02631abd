import type { Queryable } from "../db/driver.js";
import type { InternalTables } from "../db/tables.js";

export interface PruneResult {
  deliveries: number;
  events: number;
}

/**
 * Deletes, in one small batch each, finished deliveries (with their attempt history) and routed
 * events older than the retention, so the tables stay bounded without long locks. Dead
 * deliveries are kept as long as their dead letters may still be replayed (`deadRetentionMs`);
 * an event stays while any of its deliveries does.
 */
export async function pruneOnce(
  db: Queryable,
  t: InternalTables,
  retentionMs: number,
  deadRetentionMs: number,
  batch = 1000,
): Promise<PruneResult> {
  const { rows: gone } = await db.query<{ id: string }>(
    `WITH old AS (
       SELECT id FROM ${t.deliveries}
        WHERE (status = 'succeeded' AND finished_at < now() - $1 * interval '1 millisecond')
           OR (status = 'dead' AND dead_letter IS NULL AND finished_at < now() - $2 * interval '1 millisecond')
        LIMIT $3
     )
     DELETE FROM ${t.deliveries} d USING old WHERE d.id = old.id RETURNING d.id`,
    [retentionMs, deadRetentionMs, batch],
  );
  if (gone.length > 0) {
    await db.query(`DELETE FROM ${t.attempts} WHERE delivery_id = ANY($1::uuid[])`, [gone.map((r) => r.id)]);
  }
  const { rowCount: events } = await db.query(
    `DELETE FROM ${t.events} e
      WHERE e.id IN (
        SELECT id FROM ${t.events}
         WHERE routed_at IS NOT NULL AND routed_at < now() - $1 * interval '1 millisecond'
         ORDER BY id LIMIT $2)
        AND NOT EXISTS (SELECT 1 FROM ${t.eventDeliveries}(e.id, e.created_at))`,
    [retentionMs, batch],
  );
  return { deliveries: gone.length, events };
}
