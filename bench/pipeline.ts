/**
 * Helpers shared by the figures that run the pipeline in worker processes: a fresh database
 * with its own small pool, delivery counts read from the database, and waiting with a deadline.
 */

import type { Database } from "../src/db/driver.js";
import { openPostgres } from "../src/db/pg.js";
import type { BenchDatabase, DatabaseServer } from "./database.js";
import { onCleanup, sleep } from "./resources.js";

/** A fresh database and a pool on it for the benchmark's own statements. */
export interface FigureDatabase {
  readonly database: BenchDatabase;
  readonly db: Database;
  /** Closes the pool and drops the database. */
  close(): Promise<void>;
}

/** Creates a fresh database and opens a pool of `max` connections on it. (Default: 4) */
export async function freshDatabase(server: DatabaseServer, max = 4): Promise<FigureDatabase> {
  const database = await server.create();
  const db = await openPostgres(database.url, { max, applicationName: "fraiseql-bench" });
  const closePool = onCleanup(() => db.close());
  return {
    database,
    db,
    async close() {
      await closePool();
      await database.drop();
    },
  };
}

/** Delivery rows per status. */
export async function deliveryStatuses(db: Database): Promise<Record<string, number>> {
  const { rows } = await db.query<{ status: string; n: number }>(
    "SELECT status, count(*)::int AS n FROM fraiseql.deliveries GROUP BY status",
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Deliveries with status `succeeded`. */
export async function succeededCount(db: Database): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM fraiseql.deliveries WHERE status = 'succeeded'",
  );
  return rows[0]?.n ?? 0;
}

/**
 * Calls `check` every `everyMs` until it returns true; throws after `timeoutMs`, with `describe()`
 * (the progress so far) in the message.
 */
export async function waitUntil(
  check: () => Promise<boolean>,
  options: { timeoutMs: number; everyMs?: number; what: string; describe?: () => Promise<string> },
): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > deadline) {
      const progress = options.describe ? `: ${await options.describe()}` : "";
      throw new Error(`${options.what} not done after ${options.timeoutMs / 1000} s${progress}`);
    }
    await sleep(options.everyMs ?? 20);
  }
}

/**
 * Transactions committed or rolled back in `db`'s database so far (`pg_stat_database`). A server
 * backend reports its counts at most about once a second while busy, and when its connection
 * closes, so read the end value after the workers have exited.
 */
export async function transactionCount(db: Database): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = current_database()`,
  );
  return Number(rows[0]?.n ?? 0);
}

/** CPU time per event, µs, from cores used over `seconds`; undefined when not measured. */
export function microsPerEvent(
  cores: number | undefined,
  seconds: number,
  events: number,
): number | undefined {
  return cores === undefined ? undefined : Math.round((cores * seconds * 1e6) / events);
}

/** The value at fraction `p` (0..1) of sorted `values` (nearest rank); NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank] as number;
}
