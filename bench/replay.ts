/**
 * The DLQ replay figure: N dead letters (a receiver answering 503, `max_attempts = 1`), then
 * `replayDlq` with a delay while one rate-limited worker process delivers. It measures the replay
 * call, the time until everything was delivered, the highest rate the receiver saw over any one
 * second, and whether anything arrived before the delay was over.
 */

import { availableParallelism } from "node:os";
import { type Fraiseql, openFraiseql } from "../src/app.js";
import { replayDlq } from "../src/dlq/replay.js";
import { CpuProbe, type CpuUse } from "./cpu.js";
import { backendPids, type DatabaseServer } from "./database.js";
import {
  deliveryStatuses,
  type FigureDatabase,
  freshDatabase,
  succeededCount,
  waitUntil,
} from "./pipeline.js";
import type { Receiver } from "./receiver-control.js";
import { epochMs } from "./resources.js";
import { type PreparedFigure, startFigureWorkers, type WorkerProcess } from "./workers.js";
import { bulkInsertSql, DRAIN_TABLE, type WorkerTomlOptions, workerConfig, workerToml } from "./workload.js";

/** Options of {@link measureReplay}. */
export interface ReplayFigureOptions {
  readonly server: DatabaseServer;
  readonly receiver: Receiver;
  /** Dead letters made, then replayed. */
  readonly letters: number;
  /** `delay` of the replay, ms. */
  readonly delayMs: number;
  /** `[webhooks.rate_limiting]` of the delivering worker. */
  readonly maxPerSecond: number;
  readonly burst: number;
}

/** What the replay measured; times in seconds from the start of the `replayDlq` call. */
export interface ReplayFigureResult {
  readonly letters: number;
  /** Entries the call queued again. */
  readonly replayed: number;
  /** The `replayDlq` call. */
  readonly callSeconds: number;
  /** Until the last request arrived. */
  readonly deliveredSeconds: number;
  /** What the rate limit allows: the delay, then `burst` at once, then the rest at `max_per_second`. */
  readonly idealSeconds: number;
  /** Most requests that arrived within any window of one second. */
  readonly maxPerSecondWindow: number;
  /** When the first request arrived. */
  readonly firstArrivalSeconds: number;
  /** Requests that arrived before the delay was over (should be 0). */
  readonly beforeDelay: number;
  /** Requests that carried a delivery id other than those of the dead letters (should be 0). */
  readonly unknownIds: number;
  /** DLQ entries left after every replayed delivery succeeded (a success removes its entry). */
  readonly entriesLeft: number;
  /** Dead-lettering the N deliveries before the replay (not part of the figure). */
  readonly deadLetteringSeconds: number;
  readonly statuses: Record<string, number>;
  readonly cpu: CpuUse;
}

/** Most timestamps (ms, sorted) within any window of `windowMs`. */
export function maxInWindow(sorted: readonly number[], windowMs: number): number {
  let best = 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to++) {
    while ((sorted[to] as number) - (sorted[from] as number) >= windowMs) from++;
    best = Math.max(best, to - from + 1);
  }
  return best;
}

/**
 * Dead-letters `letters` deliveries with a dispatcher in this process (no rate limit, receiver
 * answering 503, `max_attempts = 1`; not timed) and one worker process with the rate limit,
 * stops the in-process dispatcher, switches the receiver to 200, then calls `replayDlq` for every entry with `delayMs` and waits
 * until each replayed delivery has succeeded.
 */
export async function measureReplay(options: ReplayFigureOptions): Promise<ReplayFigureResult> {
  return (await prepareReplay(options)).run();
}

/** A replay run whose database exists and whose worker is starting. */
export type PreparedReplay = PreparedFigure<ReplayFigureResult>;

/**
 * Creates the database and spawns the rate-limited worker of {@link measureReplay}. With
 * `pause`, the worker is stopped (SIGSTOP) once it runs, so that it can start together with other
 * figures' workers and wait without polling.
 */
export async function prepareReplay(
  options: ReplayFigureOptions & { pause?: boolean },
): Promise<PreparedReplay> {
  const fresh = await freshDatabase(options.server, 10);
  const { workers, ready } = await startFigureWorkers(
    "dlq-replay",
    workerToml({
      ...replayShape(options.receiver),
      databaseUrl: fresh.database.url,
      rateLimit: { maxPerSecond: options.maxPerSecond, burst: options.burst },
    }),
    { pause: options.pause, closeFigure: () => fresh.close() },
  );
  const worker = workers[0] as WorkerProcess;
  return { ready, run: () => measure(options, fresh, worker, ready) };
}

function replayShape(receiver: Receiver): Omit<WorkerTomlOptions, "databaseUrl"> {
  return { receiverUrl: receiver.url, observer: "orders", maxAttempts: 1 };
}

async function measure(
  options: ReplayFigureOptions,
  fresh: FigureDatabase,
  worker: WorkerProcess,
  ready: Promise<void>,
): Promise<ReplayFigureResult> {
  const { receiver, letters } = options;
  let app: Fraiseql | undefined;
  try {
    await ready;
    app = await openFraiseql(
      workerConfig({ ...replayShape(receiver), databaseUrl: fresh.database.url, pollInterval: "10ms" }),
      { db: fresh.db },
    );
    await app.migrate();
    // The rate-limited worker takes part in the dead-lettering, at most at its share of the rate.
    // The in-process dispatcher removes its row from fraiseql.workers when it stops; the worker's
    // next heartbeat (every lease / 3, 1.7 s) then gives it the whole budget, before the replay's
    // delay is over.
    worker.resume();
    await receiver.configure({ status: 503 });
    const failStart = epochMs();
    app.dispatcher.start();
    await fresh.db.query(bulkInsertSql(DRAIN_TABLE), [letters]);
    await waitUntil(async () => ((await deliveryStatuses(fresh.db)).dead ?? 0) >= letters, {
      timeoutMs: 180_000,
      everyMs: 100,
      what: `dead-lettering ${letters} deliveries`,
      describe: async () => JSON.stringify(await deliveryStatuses(fresh.db)),
    });
    await app.dispatcher.stop();
    const deadLetteringSeconds = (epochMs() - failStart) / 1000;
    const { rows: entries } = await fresh.db.query<{ delivery_id: string }>(
      "SELECT delivery_id::text FROM public.webhook_dlq",
    );
    if (entries.length !== letters)
      throw new Error(`expected ${letters} dead letters, found ${entries.length}`);
    const deadIds = new Set(entries.map((e) => e.delivery_id));

    await receiver.configure({ record: true });
    await receiver.records(0, true);
    await receiver.count(true);
    const probe = new CpuProbe({
      receiverMicros: () => receiver.cpuMicros(),
      cores: availableParallelism(),
      postgresPids: () => backendPids(fresh.db),
      workerPids: () => [worker.pid],
    });
    await probe.start();

    const started = epochMs();
    const result = await replayDlq(
      { db: fresh.db, dlq: app.dlq, schema: "fraiseql" },
      { failedAfter: new Date(failStart - 60_000), delay: options.delayMs },
    );
    const callSeconds = (epochMs() - started) / 1000;
    await waitUntil(
      async () => (await receiver.count()) >= letters && (await succeededCount(fresh.db)) >= letters,
      {
        timeoutMs: 180_000,
        what: `delivering ${letters} replayed dead letters`,
        describe: async () =>
          `${await receiver.count()} received, ${JSON.stringify(await deliveryStatuses(fresh.db))}`,
      },
    );
    const cpu = await probe.stop();
    const exit = await worker.stop();
    if (exit !== 0) throw new Error(`worker exited with ${exit}:\n${worker.output().slice(-2000)}`);
    const { records } = await receiver.records(0, true);
    const arrivals = records.map((r) => r.at).sort((a, b) => a - b);
    const { rows: left } = await fresh.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM public.webhook_dlq",
    );
    return {
      letters,
      replayed: result.replayed,
      callSeconds,
      deliveredSeconds: ((arrivals.at(-1) ?? started) - started) / 1000,
      idealSeconds:
        (options.delayMs + (Math.max(0, letters - options.burst) * 1000) / options.maxPerSecond) / 1000,
      maxPerSecondWindow: maxInWindow(arrivals, 1000),
      firstArrivalSeconds: ((arrivals[0] ?? started) - started) / 1000,
      beforeDelay: arrivals.filter((at) => at < started + options.delayMs).length,
      unknownIds: records.filter((r) => !deadIds.has(r.delivery)).length,
      entriesLeft: left[0]?.n ?? -1,
      deadLetteringSeconds,
      statuses: await deliveryStatuses(fresh.db),
      cpu,
    };
  } finally {
    await worker.stop(5_000);
    await app?.close();
    await receiver.records(0, true);
    await receiver.configure({});
    await fresh.close();
  }
}
