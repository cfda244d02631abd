/**
 * The insert figure: what the capture trigger costs a writer. Single-row autocommit INSERTs from
 * several concurrent loops, for a fixed time, into a table without the trigger and into an
 * identical table with it.
 */

import type { Database } from "../src/db/driver.js";
import { type CpuProbe, type CpuUse, mergeCpu } from "./cpu.js";
import { OBSERVED_TABLE, PLAIN_TABLE, singleInsertSql } from "./workload.js";

/** Options of {@link insertRates}. */
export interface InsertOptions {
  /**
   * A migrated benchmark database whose pool has at least `connections` connections (on PGlite
   * the loops share its one connection).
   */
  readonly db: Database;
  /** Concurrent insert loops. (Default: 16) */
  readonly connections?: number;
  /** Measured time per table, seconds. */
  readonly seconds: number;
  /** Slices each table's time is cut into, alternating between the tables. (Default: one per 0.5 s) */
  readonly slices?: number;
  /** Untimed time per table before measuring, seconds. (Default: 0.5) */
  readonly warmupSeconds?: number;
  /** Measures CPU use over each timed phase. (Default: none) */
  readonly cpu?: () => CpuProbe;
}

/** Rows per second into one table. */
export interface InsertRate {
  readonly rows: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** When a probe was given. */
  readonly cpu?: CpuUse;
}

/** Both rates of the insert figure. */
export interface InsertResult {
  readonly plain: InsertRate;
  readonly observed: InsertRate;
  /** Whether `CHECKPOINT` could be run before measuring (it needs superuser). */
  readonly checkpointed: boolean;
  /** Slices per table. */
  readonly slices: number;
}

async function insertFor(
  db: Database,
  table: string,
  connections: number,
  seconds: number,
  probe?: CpuProbe,
): Promise<InsertRate> {
  const sql = singleInsertSql(table);
  let rows = 0;
  await probe?.start();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const loop = async (worker: number) => {
    let i = 0;
    while (performance.now() < deadline) {
      i++;
      await db.query(sql, [`user${worker}-${i}@example.com`, (i % 1000) + 0.99, "pending"]);
      rows++;
    }
  };
  await Promise.all(Array.from({ length: connections }, (_, worker) => loop(worker)));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = await probe?.stop();
  return { rows, seconds: elapsed, perSecond: rows / elapsed, ...(cpu ? { cpu } : {}) };
}

/** Adds up the slices of one table: total rows over total time, CPU weighted by time. */
function combine(slices: readonly InsertRate[]): InsertRate {
  const rows = slices.reduce((sum, s) => sum + s.rows, 0);
  const seconds = slices.reduce((sum, s) => sum + s.seconds, 0);
  const cpu = mergeCpu(slices.flatMap((s) => (s.cpu ? [{ use: s.cpu, seconds: s.seconds }] : [])));
  return { rows, seconds, perSecond: rows / seconds, ...(cpu ? { cpu } : {}) };
}

async function checkpoint(db: Database): Promise<boolean> {
  // Flushing dirty pages first keeps a checkpoint started by the warm-up out of the measurement.
  try {
    await db.query("CHECKPOINT");
    return true;
  } catch {
    return false;
  }
}

/**
 * Measures both tables in alternating slices (plain, observed, plain, ...; `slices` of each), so
 * that load which comes and goes on the machine weighs on both rates alike, after a short
 * warm-up of each and a checkpoint. The observed table's events stay in the outbox (no
 * dispatcher runs).
 */
export async function insertRates(options: InsertOptions): Promise<InsertResult> {
  const { db, seconds } = options;
  const connections = options.connections ?? 16;
  const warmup = options.warmupSeconds ?? 0.5;
  const count = options.slices ?? Math.max(1, Math.round(seconds / 0.5));
  await insertFor(db, PLAIN_TABLE, connections, warmup);
  await insertFor(db, OBSERVED_TABLE, connections, warmup);
  const checkpointed = await checkpoint(db);
  const plain: InsertRate[] = [];
  const observed: InsertRate[] = [];
  for (let i = 0; i < count; i++) {
    plain.push(await insertFor(db, PLAIN_TABLE, connections, seconds / count, options.cpu?.()));
    observed.push(await insertFor(db, OBSERVED_TABLE, connections, seconds / count, options.cpu?.()));
  }
  return { plain: combine(plain), observed: combine(observed), checkpointed, slices: count };
}
