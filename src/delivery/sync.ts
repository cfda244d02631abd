import type { EntityModel } from "../config/types.js";
import type { Queryable } from "../db/driver.js";
import type { InternalTables } from "../db/tables.js";
import { keyColumn } from "../entities/ddl.js";

/** One delivery's outcome as reported to a synchronous mutation (`extensions.webhooks.deliveries`). */
export interface DeliveryOutcome {
  readonly id: string;
  readonly observer: string;
  readonly action: number;
  /** succeeded | dead | pending | running | waiting (the last three when the wait timed out) */
  readonly status: string;
  readonly attempts: number;
  readonly lastStatus: number | null;
  readonly reason: string | null;
}

export interface SyncWaitResult {
  readonly deliveries: DeliveryOutcome[];
  /** True when `timeout` passed before every delivery finished. */
  readonly timedOut: boolean;
}

const FINISHED = new Set(["succeeded", "dead"]);

/** A delivery whose attempt failed and whose retry is queued: it goes on in the background. */
function retrying(d: DeliveryOutcome): boolean {
  return d.status === "pending" && d.attempts >= 1;
}

/**
 * Whether the mutation can answer. Every delivery finished; or, with `backgroundRetry`, every
 * one finished or retrying, or waiting in its sequence behind one that is retrying.
 */
function answered(deliveries: readonly DeliveryOutcome[], backgroundRetry: boolean): boolean {
  if (!backgroundRetry) return deliveries.every((d) => FINISHED.has(d.status));
  const anyRetrying = deliveries.some(retrying);
  return deliveries.every(
    (d) => FINISHED.has(d.status) || retrying(d) || (d.status === "waiting" && anyRetrying),
  );
}

/** Options of {@link waitForMutationDeliveries}. */
export interface SyncWaitOptions {
  /** How long to wait at most, ms. */
  readonly timeoutMs: number;
  /**
   * `[webhooks.dispatch] background_retry`: true, the wait ends once every delivery has finished
   * or failed an attempt and queued its retry, which goes on in the background; false, the wait
   * covers the retries too.
   */
  readonly backgroundRetry: boolean;
}

/**
 * Waits until every delivery of the event a mutation produced has finished (succeeded or
 * dead-lettered), or with `backgroundRetry` is retrying in the background, or `timeoutMs`
 * passes. The event is found by transaction id, entity and row key, among the events after
 * `outboxBefore` (an index range; without it, the whole outbox is read on every look); its
 * routing and sending happen in the dispatcher as usual (in this or another process).
 */
export async function waitForMutationDeliveries(
  db: Queryable,
  t: InternalTables,
  entity: EntityModel,
  change: { txid: string; id: string; outboxBefore?: string | undefined },
  options: SyncWaitOptions,
  wake: () => void,
): Promise<SyncWaitResult> {
  const deadline = Date.now() + options.timeoutMs;
  const key = keyColumn(entity);
  let pause = 2;
  for (;;) {
    const { rows } = await db.query<{
      routed: boolean;
      id: string | null;
      observer: string;
      action_index: number;
      status: string;
      attempts: number;
      last_status: number | null;
      reason: string | null;
    }>(
      `SELECT e.routed_at IS NOT NULL AS routed, d.id, d.observer, d.action_index, d.status, d.attempts,
              d.last_status, d.reason
         FROM ${t.events} e LEFT JOIN LATERAL ${t.eventDeliveries}(e.id, e.created_at) d ON true
        WHERE e.id > $5::bigint AND e.txid = $1::bigint AND e.entity = $2
          AND coalesce(e.new_row, e.old_row) ->> $3 = $4
        ORDER BY e.id, d.observer, d.action_index`,
      [change.txid, entity.name, key, change.id, change.outboxBefore ?? "0"],
    );
    const routed = rows.length > 0 && rows.every((r) => r.routed);
    const deliveries: DeliveryOutcome[] = rows
      .filter((r) => r.id !== null)
      .map((r) => ({
        id: r.id as string,
        observer: r.observer,
        action: r.action_index,
        status: r.status,
        attempts: r.attempts,
        lastStatus: r.last_status,
        reason: r.reason,
      }));
    // No event at all: no observer captures this entity and event, so there is nothing to wait for.
    if (rows.length === 0 || (routed && answered(deliveries, options.backgroundRetry))) {
      return { deliveries, timedOut: false };
    }
    if (Date.now() >= deadline) return { deliveries, timedOut: true };
    wake();
    await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(0, deadline - Date.now()))));
    pause = Math.min(50, pause * 2);
  }
}
