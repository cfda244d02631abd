/**
 * The recovery figure: a worker process is killed (SIGKILL) with deliveries in flight, a new one
 * is started, and the clock runs from the new worker's spawn until the last of the deliveries that
 * were in flight has been received again. Those deliveries stay leased to the dead worker until
 * the lease runs out, so the lease is what this figure is read against.
 */

import type { DatabaseServer } from "./database.js";
import {
  deliveryStatuses,
  type FigureDatabase,
  freshDatabase,
  succeededCount,
  waitUntil,
} from "./pipeline.js";
import type { Receipt } from "./receiver.js";
import type { Receiver } from "./receiver-control.js";
import { epochMs } from "./resources.js";
import { type PreparedFigure, spawnWorker, startFigureWorkers, type WorkerProcess } from "./workers.js";
import { bulkInsertSql, DRAIN_TABLE, workerToml } from "./workload.js";

/** Options of {@link measureRecovery}. */
export interface RecoveryOptions {
  readonly server: DatabaseServer;
  readonly receiver: Receiver;
  /** Deliveries queued. */
  readonly deliveries: number;
  /** The receiver answers after this long, ms. */
  readonly answerDelayMs: number;
  /** The worker is killed once the receiver has seen this many requests. */
  readonly killAfter: number;
  /** `[webhooks.dispatch] lease`; undefined keeps the default (5s). */
  readonly lease: string | undefined;
}

/** What one recovery measured; times in seconds. */
export interface RecoveryResult {
  readonly lease: string;
  readonly deliveries: number;
  /** Delivery ids the receiver had seen before the kill that were not `succeeded` after it. */
  readonly inFlight: number;
  /** Deliveries `running` (leased to the dead worker) right after the kill. */
  readonly leasedAtKill: number;
  /** From the new worker's spawn until the last in-flight delivery was received again: the figure. */
  readonly recoverySeconds: number;
  /** From the new worker's spawn until it reported that it runs. */
  readonly startupSeconds: number;
  /** From the new worker's spawn until the first in-flight delivery was received again. */
  readonly firstResendSeconds: number;
  /** From the kill until the last in-flight delivery was received again. */
  readonly sinceKillSeconds: number;
  /** From the new worker's spawn until every delivery was `succeeded`. */
  readonly allSucceededSeconds: number;
  /** Requests received in all, minus the deliveries: the re-sent in-flight ones, and any other repeat. */
  readonly extraRequests: number;
  readonly statuses: Record<string, number>;
}

/**
 * Starts a worker on a fresh database, queues `deliveries` (one INSERT statement) to a receiver
 * answering after `answerDelayMs`, SIGKILLs the worker once `killAfter` requests have arrived,
 * reads which of the deliveries it had sent are not `succeeded`, starts a new worker, and waits
 * until each of those has been received again and every delivery has succeeded.
 */
export async function measureRecovery(options: RecoveryOptions): Promise<RecoveryResult> {
  return (await prepareRecovery(options)).run();
}

/** A recovery run whose database exists and whose first worker is starting. */
export type PreparedRecovery = PreparedFigure<RecoveryResult>;

/**
 * Creates the database and spawns the first worker of {@link measureRecovery} (its start-up is
 * not part of the figure). With `pause`, the worker is stopped (SIGSTOP) once it runs, so that it
 * can start together with other figures' workers and wait without polling.
 */
export async function prepareRecovery(
  options: RecoveryOptions & { pause?: boolean },
): Promise<PreparedRecovery> {
  const fresh = await freshDatabase(options.server);
  const { path, workers, ready } = await startFigureWorkers(
    "recovery",
    workerToml({
      databaseUrl: fresh.database.url,
      receiverUrl: options.receiver.url,
      observer: "orders",
      ...(options.lease === undefined ? {} : { lease: options.lease }),
    }),
    { pause: options.pause, closeFigure: () => fresh.close() },
  );
  const first = workers[0] as WorkerProcess;
  return { ready, run: () => measure(options, fresh, path, first, ready) };
}

async function measure(
  options: RecoveryOptions,
  fresh: FigureDatabase,
  path: string,
  first: WorkerProcess,
  ready: Promise<void>,
): Promise<RecoveryResult> {
  const { receiver, deliveries } = options;
  const workers: WorkerProcess[] = [first];
  try {
    await ready;
    first.resume();
    await receiver.configure({ delayMs: options.answerDelayMs, record: true });
    await receiver.records(0, true);
    await receiver.count(true);
    await fresh.db.query(bulkInsertSql(DRAIN_TABLE), [deliveries]);
    await waitUntil(async () => (await receiver.count()) >= options.killAfter, {
      timeoutMs: 60_000,
      everyMs: 5,
      what: `${options.killAfter} requests before the kill`,
    });
    first.kill("SIGKILL");
    await first.exited;
    const killedAt = epochMs();

    const before = await receiver.records(0);
    const { rows: done } = await fresh.db.query<{ id: string }>(
      "SELECT id::text FROM fraiseql.deliveries WHERE status = 'succeeded'",
    );
    const succeeded = new Set(done.map((r) => r.id));
    const inFlight = new Set(before.records.map((r) => r.delivery).filter((id) => !succeeded.has(id)));
    const leasedAtKill = (await deliveryStatuses(fresh.db)).running ?? 0;
    if (inFlight.size === 0) throw new Error("no delivery was in flight at the kill: kill earlier");

    const second = spawnWorker(path);
    workers.push(second);
    const readyAt = await second.ready;
    const resent = new Map<string, number>();
    let next = before.total;
    const collect = (records: readonly Receipt[]) => {
      for (const r of records) {
        if (r.at > second.spawnedAt && inFlight.has(r.delivery) && !resent.has(r.delivery)) {
          resent.set(r.delivery, r.at);
        }
      }
    };
    await waitUntil(
      async () => {
        const page = await receiver.records(next);
        next = page.total;
        collect(page.records);
        return resent.size === inFlight.size;
      },
      {
        timeoutMs: 120_000,
        everyMs: 25,
        what: "re-sending the in-flight deliveries",
        describe: async () => `${resent.size} of ${inFlight.size} re-sent`,
      },
    );
    await waitUntil(async () => (await succeededCount(fresh.db)) >= deliveries, {
      timeoutMs: 120_000,
      what: "every delivery to succeed after the restart",
      describe: async () => JSON.stringify(await deliveryStatuses(fresh.db)),
    });
    const allDoneAt = epochMs();
    const exit = await second.stop();
    if (exit !== 0) throw new Error(`worker exited with ${exit}:\n${second.output().slice(-2000)}`);
    const statuses = await deliveryStatuses(fresh.db);
    const received = await receiver.count(true);
    const times = [...resent.values()];
    const last = Math.max(...times);
    return {
      lease: options.lease ?? "5s (default)",
      deliveries,
      inFlight: inFlight.size,
      leasedAtKill,
      recoverySeconds: (last - second.spawnedAt) / 1000,
      startupSeconds: (readyAt - second.spawnedAt) / 1000,
      firstResendSeconds: (Math.min(...times) - second.spawnedAt) / 1000,
      sinceKillSeconds: (last - killedAt) / 1000,
      allSucceededSeconds: (allDoneAt - second.spawnedAt) / 1000,
      extraRequests: received - deliveries,
      statuses,
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop(5_000)));
    await receiver.records(0, true);
    await receiver.configure({});
    await fresh.close();
  }
}
