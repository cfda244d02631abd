/**
 * The memory figure (`--memory` only; it takes minutes): one worker process drains a large
 * backlog of pending deliveries while its resident set size is sampled every second. A worker
 * whose memory followed the backlog, rather than its concurrency, would show it here.
 */

import { availableParallelism } from "node:os";
import { openFraiseql } from "../src/app.js";
import { CpuProbe, type CpuUse } from "./cpu.js";
import { backendPids, type DatabaseServer } from "./database.js";
import { deliveryStatuses, freshDatabase } from "./pipeline.js";
import type { Receiver } from "./receiver-control.js";
import { epochMs, log, number, sleep } from "./resources.js";
import { residentBytes, spawnWorker, type WorkerProcess, writeConfig } from "./workers.js";
import {
  analyzeQueue,
  bulkInsertSql,
  DRAIN_TABLE,
  queueDeliveries,
  workerConfig,
  workerToml,
} from "./workload.js";

/** Options of {@link measureMemory}. */
export interface MemoryOptions {
  readonly server: DatabaseServer;
  readonly receiver: Receiver;
  /** Pending deliveries before the worker starts. */
  readonly deliveries: number;
  /** The drain is stopped after this long, ms; the result then says how far it got. */
  readonly maxDrainMs: number;
}

/** One RSS sample. */
export interface MemorySample {
  /** Seconds since the worker reported that it runs. */
  readonly seconds: number;
  /** Bytes. */
  readonly rss: number;
  /** Requests the receiver had got. */
  readonly received: number;
}

/** What the memory run measured. */
export interface MemoryResult {
  readonly deliveries: number;
  /** Whether every delivery was received before the time limit. */
  readonly completed: boolean;
  /** Requests received when the run ended. */
  readonly received: number;
  readonly drainSeconds: number;
  /** Received requests per second. */
  readonly perSecond: number;
  /** Bytes. */
  readonly rssAtStart: number;
  readonly rssMax: number;
  /** RSS at the first sample at or past 10%, 50% and 90% of the deliveries; undefined when not reached. */
  readonly rssAt10: number | undefined;
  readonly rssAt50: number | undefined;
  readonly rssAt90: number | undefined;
  /** Queueing the backlog (not part of the figure). */
  readonly setupSeconds: number;
  readonly statuses: Record<string, number>;
  readonly samples: readonly MemorySample[];
  /** CPU use during the drain. */
  readonly cpu: CpuUse;
}

const CHUNK = 50_000;

/**
 * Migrates a fresh database, queues `deliveries` pending deliveries with no dispatcher running
 * (rows inserted in chunks of 50,000 through the capture trigger; each chunk's events are then
 * routed in SQL, as the dispatcher's routing would: one pending delivery per event, the events
 * marked routed), then starts one worker and samples `VmRSS` and the receiver's count every second
 * until every delivery has arrived or `maxDrainMs` has passed.
 */
export async function measureMemory(options: MemoryOptions): Promise<MemoryResult> {
  const { receiver, deliveries } = options;
  const fresh = await freshDatabase(options.server);
  const shape = { receiverUrl: receiver.url, observer: "orders" } as const;
  let worker: WorkerProcess | undefined;
  try {
    const setupStart = epochMs();
    const app = await openFraiseql(workerConfig({ ...shape, databaseUrl: fresh.database.url }), {
      db: fresh.db,
    });
    try {
      await app.migrate();
    } finally {
      await app.close();
    }
    for (let done = 0; done < deliveries; done += CHUNK) {
      const rows = Math.min(CHUNK, deliveries - done);
      await fresh.db.query(bulkInsertSql(DRAIN_TABLE), [rows]);
      await queueDeliveries(fresh.db);
      if ((done / CHUNK) % 4 === 3) log(`memory: ${number.format(done + rows)} deliveries queued`);
    }
    await analyzeQueue(fresh.db);
    const setupSeconds = (epochMs() - setupStart) / 1000;

    const path = await writeConfig("memory", workerToml({ ...shape, databaseUrl: fresh.database.url }));
    await receiver.configure({});
    await receiver.count(true);
    worker = spawnWorker(path);
    const readyAt = await worker.ready;
    const running = worker;
    const probe = new CpuProbe({
      receiverMicros: () => receiver.cpuMicros(),
      cores: availableParallelism(),
      postgresPids: () => backendPids(fresh.db),
      workerPids: () => [running.pid],
    });
    await probe.start();
    const samples: MemorySample[] = [];
    const sample = async () => {
      const rss = residentBytes(worker?.pid ?? 0);
      const received = await receiver.count();
      if (rss !== undefined) samples.push({ seconds: (epochMs() - readyAt) / 1000, rss, received });
      return received;
    };
    let received = await sample();
    let lastLog = 0;
    while (received < deliveries && epochMs() - readyAt < options.maxDrainMs) {
      await sleep(1000);
      received = await sample();
      if (received - lastLog >= deliveries / 10) {
        lastLog = received;
        const rss = samples.at(-1)?.rss ?? 0;
        log(`memory: ${number.format(received)} received, worker RSS ${(rss / 2 ** 20).toFixed(0)} MiB`);
      }
    }
    const drainSeconds = (epochMs() - readyAt) / 1000;
    const cpu = await probe.stop();
    const exit = await worker.stop();
    if (exit !== 0) throw new Error(`worker exited with ${exit}:\n${worker.output().slice(-2000)}`);
    const at = (fraction: number) => samples.find((s) => s.received >= fraction * deliveries)?.rss;
    return {
      deliveries,
      completed: received >= deliveries,
      received,
      drainSeconds,
      perSecond: received / drainSeconds,
      rssAtStart: samples[0]?.rss ?? 0,
      rssMax: Math.max(...samples.map((s) => s.rss)),
      rssAt10: at(0.1),
      rssAt50: at(0.5),
      rssAt90: at(0.9),
      setupSeconds,
      statuses: await deliveryStatuses(fresh.db),
      samples,
      cpu,
    };
  } finally {
    await worker?.stop(5_000);
    await fresh.close();
  }
}
