import type { Database } from "../db/driver.js";
import { type InternalTables, internalTables } from "../db/tables.js";
import { FraiseqlError } from "../errors.js";
import type { DeadLetter, DlqBackend } from "./types.js";

/** What to replay: entry ids, or a time filter with optional attribute filters. */
export interface ReplayOptions {
  /** Entries by id (`dlq_...`). */
  ids?: readonly string[];
  /** Entries that failed at or after this time. */
  failedAfter?: Date;
  /** With `failedAfter`: only entries matching all of these. */
  filter?: { observer?: string; entity?: string; reason?: string; status?: number };
  /** Wait this long before sending, ms. (Default: 0) */
  delay?: number;
  /** Called after each batch with how many entries were handled so far and in all. */
  onProgress?: (done: number, total: number) => void;
}

export interface ReplayResult {
  /** Entries selected. */
  readonly selected: number;
  /** Deliveries queued again. */
  readonly replayed: number;
  /** Entries not replayed, with the reason (already queued by another replay, delivery pruned, ...). */
  readonly skipped: readonly { id: string; reason: string }[];
}

const BATCH = 500;

/**
 * Replays dead letters through the normal pipeline: each delivery is queued again with the same
 * delivery id (and its attempt count going on from where it stopped), so a receiver that
 * deduplicates on `X-FraiseQL-Delivery` sees the same id. In a sequential observer, replaying the
 * failed action resumes the chain: the actions dead-lettered behind it (`upstream_failed`) wait for
 * it again. A replay that fails again returns to the same DLQ entry; one that succeeds removes it.
 * Two replays of one entry at the same time queue it once.
 */
export async function replayDlq(
  deps: { db: Database; dlq: DlqBackend; schema: string },
  options: ReplayOptions,
): Promise<ReplayResult> {
  const t = internalTables(deps.schema);
  let entries: DeadLetter[];
  if (options.ids && options.ids.length > 0) {
    entries = [];
    for (const id of options.ids) {
      const entry = await deps.dlq.get(id);
      if (!entry) throw new FraiseqlError("FQL_NOT_FOUND", `no dead letter with id "${id}"`);
      entries.push(entry);
    }
  } else if (options.failedAfter) {
    entries = await deps.dlq.list({ failedAfter: options.failedAfter, ...options.filter, limit: 0 });
  } else {
    throw new FraiseqlError("FQL_USAGE", "replay needs entry ids or a failed-after date");
  }
  // Oldest first, so a replayed backlog goes out in the order it failed.
  entries.sort((a, b) => a.failed_at.localeCompare(b.failed_at));
  const skipped: { id: string; reason: string }[] = [];
  let replayed = 0;
  let done = 0;
  for (let i = 0; i < entries.length; i += BATCH) {
    const batch = entries.slice(i, i + BATCH);
    const { queued, superseded } = await requeue(deps, t, batch, options.delay ?? 0);
    if (superseded.length > 0 && deps.dlq.name !== "postgresql") await deps.dlq.resolve(superseded);
    const queuedIds = new Set(
      queued.flatMap((q) => [q.id, q.batchId].filter((x): x is string => x !== null)),
    );
    const marked = batch.filter((e) => queuedIds.has(e.delivery_id));
    for (const e of batch) {
      if (!queuedIds.has(e.delivery_id))
        skipped.push({ id: e.id, reason: "not dead any more (already replayed or delivered)" });
    }
    await deps.dlq.markReplayed(
      marked.map((e) => e.id),
      new Date(),
    );
    replayed += marked.length;
    done += batch.length;
    options.onProgress?.(done, entries.length);
  }
  return { selected: entries.length, replayed, skipped };
}

/** What {@link requeue} queued again. */
interface Requeued {
  /** The deliveries queued, by id, with their batch when they were dead-lettered in one. */
  readonly queued: { id: string; batchId: string | null }[];
  /**
   * Deliveries of batched actions that were dead-lettered on their own (`upstream_failed`, never
   * sent): their next outcome is recorded under the batch they will be sent in, so their own
   * entries go now. Removed in the transaction for the PostgreSQL backend, by the caller after
   * it for the others.
   */
  readonly superseded: string[];
}

/** Queues dead deliveries again in one transaction. */
async function requeue(
  deps: { db: Database; dlq: DlqBackend },
  t: InternalTables,
  batch: readonly DeadLetter[],
  delay: number,
): Promise<Requeued> {
  return deps.db.transaction(async (tx) => {
    const ids = batch.map((e) => e.delivery_id);
    // Roots first: a failed action, or an upstream_failed one replayed without its upstream. An
    // entry of a delivery that has been sent in a batch since is left alone: the batch's own
    // entry, keyed by the batch id, stands for it.
    const { rows: roots } = await tx.query<{ id: string; batch_id: string | null; own_batch_entry: boolean }>(
      `UPDATE ${t.deliveries} d
          SET status = 'pending', run_at = now() + $2 * interval '1 millisecond', attempt_base = d.attempts,
              reason = NULL, last_error = NULL, replayed_at = now(), dead_letter = NULL, finished_at = NULL,
              locked_by = NULL, locked_until = NULL, updated_at = now()
        WHERE ((d.batch_id IS NULL AND d.id = ANY($1::uuid[])) OR d.batch_id = ANY($1::uuid[])) AND d.status = 'dead'
          AND NOT (d.reason = 'upstream_failed' AND d.depends_on = ANY($1::uuid[]))
       RETURNING d.id, d.batch_id, (d.batch_key IS NOT NULL AND d.batch_id IS NULL) AS own_batch_entry`,
      [ids, delay],
    );
    if (roots.length === 0) return { queued: [], superseded: [] };
    // The actions that were dead-lettered behind a replayed one wait for it again.
    const { rows: chained } = await tx.query<{ id: string; own_batch_entry: boolean }>(
      `WITH RECURSIVE chain AS (
         SELECT id FROM ${t.deliveries} WHERE status = 'dead' AND reason = 'upstream_failed' AND depends_on = ANY($1::uuid[])
         UNION
         SELECT d.id FROM ${t.deliveries} d JOIN chain c ON d.depends_on = c.id
          WHERE d.status = 'dead' AND d.reason = 'upstream_failed'
       )
       UPDATE ${t.deliveries} d
          SET status = 'waiting', attempt_base = d.attempts, reason = NULL, replayed_at = now(), dead_letter = NULL,
              finished_at = NULL, updated_at = now()
         FROM chain WHERE d.id = chain.id
       RETURNING d.id, (d.batch_key IS NOT NULL AND d.batch_id IS NULL) AS own_batch_entry`,
      [roots.map((r) => r.id)],
    );
    const superseded = [...roots, ...chained].filter((r) => r.own_batch_entry).map((r) => r.id);
    if (superseded.length > 0 && deps.dlq.name === "postgresql") await deps.dlq.resolve(superseded, tx);
    return {
      queued: [
        ...roots.map((r) => ({ id: r.id, batchId: r.batch_id })),
        ...chained.filter((r) => ids.includes(r.id)).map((r) => ({ id: r.id, batchId: null })),
      ],
      superseded,
    };
  });
}
