/**
 * The drain-scaling and batching figures: N events committed at once while 1, 2 or 4 worker
 * processes run, timed from the commit until every delivery is `succeeded` in the database.
 */

import { availableParallelism } from "node:os";
import { CpuProbe, type CpuUse } from "./cpu.js";
import { backendPids, type DatabaseServer } from "./database.js";
import {
  deliveryStatuses,
  freshDatabase,
  microsPerEvent,
  succeededCount,
  transactionCount,
  waitUntil,
} from "./pipeline.js";
import type { Receiver } from "./receiver-control.js";
import { epochMs, sleep } from "./resources.js";
import { type PreparedFigure, startFigureWorkers, stopAll } from "./workers.js";
import { bulkInsertSql, DRAIN_TABLE, type WorkerTomlOptions, workerToml } from "./workload.js";

/** Options of {@link workerDrain}. */
export interface WorkerDrainOptions {
  readonly server: DatabaseServer;
  readonly receiver: Receiver;
  /** Worker processes. */
  readonly workers: number;
  /** Rows inserted (one statement), hence deliveries. */
  readonly events: number;
  /** The workers' configuration, apart from the database and the receiver. */
  readonly config: Omit<WorkerTomlOptions, "databaseUrl" | "receiverUrl">;
  /** Name of the configuration file (unique per run). */
  readonly name: string;
  /** Gives up after this long, ms. (Default: 180000) */
  readonly timeoutMs?: number;
}

/** What one drain by worker processes measured. */
export interface WorkerDrainResult {
  readonly workers: number;
  readonly events: number;
  /** From the commit of the INSERT until the database showed every delivery `succeeded`. */
  readonly seconds: number;
  readonly perSecond: number;
  /** HTTP requests the receiver got. */
  readonly requests: number;
  /** Events those requests carried (a batch carries several). */
  readonly eventsReceived: number;
  /**
   * From the first spawn until the last worker reported that it runs (not timed; longer when
   * several drains' workers were started together).
   */
  readonly startupSeconds: number;
  /** Delivery rows per status after the drain. */
  readonly statuses: Record<string, number>;
  /**
   * Database transactions per event during the drain (routing, claims, settles, heartbeats,
   * lease renewals, idle polls, and this process's progress queries once every request has
   * arrived), from `pg_stat_database`; approximate, as the server reports counts about once a
   * second.
   */
  readonly transactionsPerEvent: number;
  /** CPU time of the worker processes and of the PostgreSQL backends per event, µs. */
  readonly workerMicrosPerEvent: number | undefined;
  readonly postgresMicrosPerEvent: number | undefined;
  readonly cpu: CpuUse;
}

/** A drain whose database exists and whose workers are starting. */
export type PreparedDrain = PreparedFigure<WorkerDrainResult>;

/**
 * Creates a fresh database and spawns `workers` worker processes on it. With `pause`, each worker
 * is stopped (SIGSTOP) once it runs, so that drains prepared together start their processes
 * together (using both cores) and wait without polling while the others are measured.
 */
export async function prepareWorkerDrain(
  options: WorkerDrainOptions & { pause?: boolean },
): Promise<PreparedDrain> {
  const { receiver, events } = options;
  const fresh = await freshDatabase(options.server);
  const { workers, ready } = await startFigureWorkers(
    options.name,
    workerToml({ ...options.config, databaseUrl: fresh.database.url, receiverUrl: receiver.url }),
    { count: options.workers, pause: options.pause, closeFigure: () => fresh.close() },
  );
  const close = async () => {
    await Promise.all(workers.map((w) => w.stop(5_000)));
    await fresh.close();
  };
  const run = async (): Promise<WorkerDrainResult> => {
    try {
      await ready;
      const readyAt = await Promise.all(workers.map((w) => w.ready));
      const startupSeconds = (Math.max(...readyAt) - Math.min(...workers.map((w) => w.spawnedAt))) / 1000;
      for (const w of workers) w.resume();
      await receiver.configure({ parse: true });
      await receiver.counts(true);
      const probe = new CpuProbe({
        receiverMicros: () => receiver.cpuMicros(),
        cores: availableParallelism(),
        postgresPids: () => backendPids(fresh.db),
        workerPids: () => workers.map((w) => w.pid),
      });

      const transactionsBefore = await transactionCount(fresh.db);
      await fresh.db.query(bulkInsertSql(DRAIN_TABLE), [events]);
      const committed = epochMs();
      await probe.start();
      let received = { count: 0, events: 0 };
      await waitUntil(
        async () => {
          received = await receiver.counts();
          return received.events >= events && (await succeededCount(fresh.db)) >= events;
        },
        {
          timeoutMs: options.timeoutMs ?? 180_000,
          what: `drain of ${events} events by ${options.workers} worker(s)`,
          describe: async () =>
            `received ${received.events} events, statuses ${JSON.stringify(await deliveryStatuses(fresh.db))}`,
        },
      );
      const ended = epochMs();
      const cpu = await probe.stop();
      await stopAll(workers);
      // The workers' backends report their last counts as their connections close.
      await sleep(100);
      const transactions = (await transactionCount(fresh.db)) - transactionsBefore;
      received = await receiver.counts(true);
      const statuses = await deliveryStatuses(fresh.db);
      if (statuses.succeeded !== events) {
        throw new Error(`expected ${events} succeeded deliveries, found ${JSON.stringify(statuses)}`);
      }
      const seconds = (ended - committed) / 1000;
      return {
        workers: options.workers,
        events,
        seconds,
        perSecond: events / seconds,
        requests: received.count,
        eventsReceived: received.events,
        startupSeconds,
        statuses,
        transactionsPerEvent: transactions / events,
        workerMicrosPerEvent: microsPerEvent(cpu.workers, seconds, events),
        postgresMicrosPerEvent: microsPerEvent(cpu.postgres, seconds, events),
        cpu,
      };
    } finally {
      await receiver.configure({});
      await close();
    }
  };
  return { ready: ready.then(() => {}), run };
}

/**
 * Starts `workers` worker processes on a fresh database and waits until each runs (start-up is
 * not timed), then inserts `events` rows in one statement and measures until every delivery has
 * succeeded: the receiver's count is polled every 20 ms (cheap, over IPC), and once it reached
 * the number of events, the database every 20 ms. The workers are then stopped with SIGTERM and
 * must exit with 0; the database is dropped.
 */
export async function workerDrain(options: WorkerDrainOptions): Promise<WorkerDrainResult> {
  const prepared = await prepareWorkerDrain(options);
  return prepared.run();
}
