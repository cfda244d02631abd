/**
 * The drain figure: N events already waiting in the outbox, then the dispatcher is started and
 * timed until every delivery has succeeded.
 */

import { openFraiseql } from "../src/app.js";
import type { Database } from "../src/db/driver.js";
import { type AttemptRecord, type ClaimedDelivery, channels } from "../src/delivery/dispatcher.js";
import type { HttpSender } from "../src/delivery/http.js";
import type { RetryDecision } from "../src/delivery/retry.js";
import type { CpuProbe, CpuUse } from "./cpu.js";
import { analyzeQueue, benchConfig, bulkInsertSql, DRAIN_TABLE, queueDeliveries } from "./workload.js";

/** Options of {@link drainRate}. */
export interface DrainOptions {
  /** A migrated benchmark database (see `prepareDatabase`). */
  readonly db: Database;
  readonly receiverUrl: string;
  /** Rows inserted, hence deliveries drained. */
  readonly deliveries: number;
  /** Gives up after this long, ms. (Default: 120000) */
  readonly timeoutMs?: number;
  /** Measures CPU use over the timed part. (Default: none) */
  readonly cpu?: () => CpuProbe;
  /**
   * Routes the events in SQL before the clock starts, as the dispatcher's routing would (one
   * pending delivery per event, the events marked routed), so the dispatcher drains queued
   * deliveries through its claims instead of routing a backlog of changes. (Default: false)
   */
  readonly queued?: boolean;
  /** Sends through this instead of HTTP (see {@link instantSender}). (Default: the undici sender) */
  readonly sender?: HttpSender;
}

/**
 * A sender that answers 200 on the next turn of the event loop, without a request: the drain
 * then measures what the pipeline costs besides HTTP (claims, settles, rendering, signing).
 */
export function instantSender(): HttpSender {
  const answer = {
    outcome: { kind: "success", status: 200 },
    excerpt: "",
    error: undefined,
    durationMs: 0,
  } as const;
  return {
    send: () => new Promise((resolve) => setImmediate(resolve, answer)),
    close: async () => {},
  };
}

/** What one drain measured. */
export interface DrainResult {
  readonly deliveries: number;
  /** From `dispatcher.start()` until the last delivery was settled as succeeded. */
  readonly seconds: number;
  readonly perSecond: number;
  /** From `dispatcher.start()` until every event had been routed (overlaps with sending). */
  readonly routedSeconds: number;
  /** From `dispatcher.start()` until the first delivery was settled. */
  readonly firstSettledMs: number;
  /** Delivery rows per status after the drain, as read from the database. */
  readonly statuses: Record<string, number>;
  /** When a probe was given. */
  readonly cpu?: CpuUse;
}

/**
 * Inserts `deliveries` rows into the observed table with no dispatcher running, then starts
 * one and measures. Progress is taken from the dispatcher's diagnostics channels (published
 * after each settle transaction commits), so the measurement adds no queries; the outcome is
 * checked in the database afterwards.
 */
export async function drainRate(options: DrainOptions): Promise<DrainResult> {
  const { db, deliveries } = options;
  const config = benchConfig(options.receiverUrl);
  const app = await openFraiseql(config, { db, ...(options.sender ? { sender: options.sender } : {}) });
  let routed = 0;
  let succeeded = 0;
  let failed = 0;
  let started = 0;
  let routedAt = 0;
  let firstSettledAt = 0;
  let finish: () => void = () => {};
  let fail: (error: Error) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const onRouted = (message: unknown) => {
    routed += (message as { events: number }).events;
    if (routed >= deliveries && routedAt === 0) routedAt = performance.now();
  };
  const onSettled = (message: unknown) => {
    const { decision } = message as { delivery: ClaimedDelivery; decision: RetryDecision };
    if (firstSettledAt === 0) firstSettledAt = performance.now();
    if (decision.action === "succeeded") succeeded++;
    else failed++;
    if (succeeded >= deliveries) finish();
  };
  const onAttempt = (message: unknown) => {
    const { result } = message as AttemptRecord;
    if (result.outcome.kind !== "success") fail(new Error(`a delivery failed: ${result.error ?? "unknown"}`));
  };
  channels.routed.subscribe(onRouted);
  channels.settled.subscribe(onSettled);
  channels.attempt.subscribe(onAttempt);
  const timeoutMs = options.timeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await db.query(bulkInsertSql(DRAIN_TABLE), [deliveries]);
    if (options.queued) {
      await queueDeliveries(db);
      await analyzeQueue(db);
    }
    const { rows } = await db.query<{ n: string }>(
      options.queued
        ? "SELECT count(*)::text AS n FROM fraiseql.deliveries WHERE status = 'pending'"
        : "SELECT count(*)::text AS n FROM fraiseql.events WHERE routed_at IS NULL",
    );
    if (Number(rows[0]?.n) !== deliveries) {
      throw new Error(
        `expected ${deliveries} waiting ${options.queued ? "deliveries" : "events"}, found ${rows[0]?.n}`,
      );
    }

    const probe = options.cpu?.();
    await probe?.start();
    started = performance.now();
    app.dispatcher.start();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`drain not finished after ${timeoutMs}ms: ${succeeded} succeeded, ${failed} not`)),
        timeoutMs,
      );
    });
    await Promise.race([done, timeout]);
    const ended = performance.now();
    const cpu = await probe?.stop();
    await app.dispatcher.stop();

    const { rows: byStatus } = await db.query<{ status: string; n: string }>(
      "SELECT status, count(*)::text AS n FROM fraiseql.deliveries GROUP BY status",
    );
    const statuses = Object.fromEntries(byStatus.map((r) => [r.status, Number(r.n)]));
    if (statuses.succeeded !== deliveries) {
      throw new Error(`expected ${deliveries} succeeded deliveries, found ${JSON.stringify(statuses)}`);
    }
    const seconds = (ended - started) / 1000;
    return {
      deliveries,
      seconds,
      perSecond: deliveries / seconds,
      routedSeconds: ((routedAt || ended) - started) / 1000,
      firstSettledMs: firstSettledAt - started,
      statuses,
      ...(cpu ? { cpu } : {}),
    };
  } finally {
    if (timer) clearTimeout(timer);
    channels.routed.unsubscribe(onRouted);
    channels.settled.unsubscribe(onSettled);
    channels.attempt.unsubscribe(onAttempt);
    await app.close();
  }
}
