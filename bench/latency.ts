/**
 * The latency figure: single-row INSERTs at a steady rate into an observed table while one worker
 * process delivers; the receiver records when each request arrived, and the body carries the
 * time the row was written (`sent_ms`, the server's `clock_timestamp()` during the INSERT).
 */

import { availableParallelism } from "node:os";
import { CpuProbe, type CpuUse } from "./cpu.js";
import { backendPids, type DatabaseServer } from "./database.js";
import {
  type FigureDatabase,
  freshDatabase,
  microsPerEvent,
  percentile,
  transactionCount,
  waitUntil,
} from "./pipeline.js";
import type { Receiver } from "./receiver-control.js";
import { epochMs, sleep } from "./resources.js";
import { type PreparedFigure, startFigureWorkers, type WorkerProcess } from "./workers.js";
import { LATENCY_TABLE, workerToml } from "./workload.js";

/** Options of {@link measureLatency}. */
export interface LatencyOptions {
  readonly server: DatabaseServer;
  readonly receiver: Receiver;
  /** INSERTs per second. */
  readonly rate: number;
  /** Measured time, seconds. */
  readonly seconds: number;
  /** Time at the same rate before measuring, seconds (connections opened, JIT warm). */
  readonly warmupSeconds: number;
  /** `[webhooks.dispatch] poll_interval`; undefined keeps the default (200ms). */
  readonly pollInterval: string | undefined;
  /** Name of the configuration file (unique per run). */
  readonly name: string;
}

/** Milliseconds from the row's write to the request's arrival. */
export interface LatencyResult {
  readonly pollInterval: string;
  readonly rate: number;
  /** Events whose row was written in the measured time. */
  readonly events: number;
  /** Their rate, /s: below `rate` when the inserting loop could not keep up. */
  readonly achievedRate: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
  /** INSERT round trips seen by the inserting loop (statement + commit), ms. */
  readonly insertP50: number;
  readonly insertP99: number;
  /** Most INSERTs in flight at once (the pool has 16 connections). */
  readonly maxInFlight: number;
  /**
   * Database transactions per event besides its INSERT (routing, claims, settles, heartbeats,
   * polls), from `pg_stat_database`; approximate, as the server reports counts about once a second.
   */
  readonly transactionsPerEvent: number;
  /** CPU time of the worker and of the PostgreSQL backends (the INSERTs included) per event, µs. */
  readonly workerMicrosPerEvent: number | undefined;
  readonly postgresMicrosPerEvent: number | undefined;
  readonly cpu: CpuUse;
}

/**
 * One row per statement. `sent_ms` must be the commit, the figure's start: with
 * `synchronous_commit = off` for this transaction the row is visible to the worker as soon as the
 * INSERT ends, so its `clock_timestamp()` is the commit to within microseconds. With the default
 * `on`, the row would become visible only after the server flushed its WAL, a wait (milliseconds,
 * sometimes hundreds on this machine's disk) that belongs to the writer's commit, not to delivery.
 * The worker's own transactions keep the server's default.
 */
const INSERT = `BEGIN; SET LOCAL synchronous_commit = off; INSERT INTO public.${LATENCY_TABLE} (sent_ms) VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::float8); COMMIT`;

/**
 * Starts one worker process on a fresh database, waits until it runs, then inserts at `rate` for
 * `warmupSeconds + seconds` on an open-loop schedule (each INSERT is issued at its planned time
 * whether or not earlier ones have returned), waits until every row's request has arrived, and
 * reports the percentiles over the rows written after the warm-up.
 */
export async function measureLatency(options: LatencyOptions): Promise<LatencyResult> {
  return (await prepareLatency(options)).run();
}

/** A latency run whose database exists and whose worker is starting. */
export type PreparedLatency = PreparedFigure<LatencyResult>;

/**
 * Creates the database and spawns the worker of {@link measureLatency}. With `pause`, the worker
 * is stopped (SIGSTOP) once it runs, so that runs prepared together start their processes
 * together and wait without polling while the others are measured.
 */
export async function prepareLatency(
  options: LatencyOptions & { pause?: boolean },
): Promise<PreparedLatency> {
  const fresh = await freshDatabase(options.server, 16);
  const { workers, ready } = await startFigureWorkers(
    options.name,
    workerToml({
      databaseUrl: fresh.database.url,
      receiverUrl: options.receiver.url,
      observer: "latency",
      ...(options.pollInterval === undefined ? {} : { pollInterval: options.pollInterval }),
    }),
    { pause: options.pause, closeFigure: () => fresh.close() },
  );
  const worker = workers[0] as WorkerProcess;
  return { ready, run: () => measure(options, fresh, worker, ready) };
}

async function measure(
  options: LatencyOptions,
  fresh: FigureDatabase,
  worker: WorkerProcess,
  ready: Promise<void>,
): Promise<LatencyResult> {
  const { receiver, rate } = options;
  try {
    await ready;
    worker.resume();
    await receiver.configure({ record: true });
    await receiver.records(0, true);
    await receiver.count(true);
    const probe = new CpuProbe({
      receiverMicros: () => receiver.cpuMicros(),
      cores: availableParallelism(),
      postgresPids: () => backendPids(fresh.db),
      workerPids: () => [worker.pid],
    });

    const total = Math.round(rate * (options.warmupSeconds + options.seconds));
    const warmup = Math.round(rate * options.warmupSeconds);
    const roundTrips: number[] = [];
    const pending = new Set<Promise<void>>();
    let maxInFlight = 0;
    let failure: Error | undefined;
    let measureFrom = Number.POSITIVE_INFINITY;
    let measureTo = 0;
    let transactionsBefore = 0;
    const issue = () => {
      const began = performance.now();
      const p = fresh.db.query(INSERT).then(
        () => {
          roundTrips.push(performance.now() - began);
        },
        (err: Error) => {
          failure ??= err;
        },
      );
      const tracked = p.finally(() => pending.delete(tracked));
      pending.add(tracked);
      maxInFlight = Math.max(maxInFlight, pending.size);
    };
    const start = performance.now();
    let issued = 0;
    while (issued < total && !failure) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (issued < due) {
        if (issued === warmup) {
          measureFrom = epochMs();
          transactionsBefore = await transactionCount(fresh.db);
          await probe.start();
        }
        issue();
        issued++;
      }
      const next = start + (issued * 1000) / rate;
      await sleep(Math.max(0, next - performance.now()));
    }
    await Promise.all(pending);
    if (failure) throw failure;
    measureTo = epochMs();
    await waitUntil(async () => (await receiver.count()) >= total, {
      timeoutMs: 60_000,
      what: `receipt of ${total} latency events`,
      describe: async () => `${await receiver.count()} received`,
    });
    const cpu = await probe.stop();
    const measuredSeconds = (epochMs() - measureFrom) / 1000;
    const exit = await worker.stop();
    if (exit !== 0) throw new Error(`worker exited with ${exit}:\n${worker.output().slice(-2000)}`);
    // The worker's backends report their last counts as its connections close.
    await sleep(100);
    const transactions = (await transactionCount(fresh.db)) - transactionsBefore;
    const { records } = await receiver.records(0, true);
    const seen = new Set<string>();
    const latencies: number[] = [];
    for (const r of records) {
      if (r.sent === null || seen.has(r.delivery)) continue;
      seen.add(r.delivery);
      if (r.sent >= measureFrom) latencies.push(r.at - r.sent);
    }
    latencies.sort((a, b) => a - b);
    roundTrips.sort((a, b) => a - b);
    return {
      pollInterval: options.pollInterval ?? "200ms (default)",
      rate,
      events: latencies.length,
      achievedRate: latencies.length / ((measureTo - measureFrom) / 1000),
      p50: percentile(latencies, 0.5),
      p90: percentile(latencies, 0.9),
      p99: percentile(latencies, 0.99),
      max: latencies.at(-1) ?? Number.NaN,
      mean: latencies.reduce((sum, l) => sum + l, 0) / Math.max(1, latencies.length),
      insertP50: percentile(roundTrips, 0.5),
      insertP99: percentile(roundTrips, 0.99),
      maxInFlight,
      transactionsPerEvent: (transactions - (total - warmup)) / (total - warmup),
      workerMicrosPerEvent: microsPerEvent(cpu.workers, measuredSeconds, total - warmup),
      postgresMicrosPerEvent: microsPerEvent(cpu.postgres, measuredSeconds, total - warmup),
      cpu,
    };
  } finally {
    await worker.stop(5_000);
    await receiver.configure({});
    await fresh.close();
  }
}
