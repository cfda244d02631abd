import { mkdir } from "node:fs/promises";
import { PGlite, types } from "@electric-sql/pglite";
import type { Database, Queryable, QueryResult } from "./driver.js";

interface PGliteLike {
  query<R>(text: string, params?: unknown[]): Promise<{ rows: R[]; affectedRows?: number }>;
  exec(text: string): Promise<unknown>;
}

// The same value shapes as the `pg` driver, so code never branches on the adapter: 64-bit
// integers and numerics stay strings (no silent precision loss).
const parsers = {
  [types.INT8]: (x: string) => x,
  [types.NUMERIC]: (x: string) => x,
};

function wrap(target: PGliteLike, onRowsChanged: (n: number) => void): Queryable {
  return {
    async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const res = await target.query<R>(text, params as unknown[] | undefined);
      if (res.affectedRows) onRowsChanged(res.affectedRows);
      // PGlite reports 0 affected rows for a SELECT: count the rows then, as `pg` does.
      return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
    },
    async exec(text: string): Promise<void> {
      await target.exec(text);
    },
  };
}

/**
 * Opens the embedded PostgreSQL (PGlite, in-process WASM). `dataDir` persists it on disk;
 * undefined keeps it in memory.
 */
export async function openPglite(dataDir?: string): Promise<Database> {
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true });
  const db = new PGlite(dataDir === undefined ? { parsers } : { dataDir, parsers });
  await db.waitReady;
  let closed = false;
  // What autovacuum does on a server, which PGlite has none of: statistics once 500 rows and a
  // fifth of the rows analysed so far changed (without them the planner scans whole tables to
  // update a few rows), with dead rows cleared too at most once a minute. It runs after the
  // statement that crossed the threshold, outside any transaction (exec waits for one to end).
  const vacuum = { changed: 0, analysed: 0, vacuumedAt: 0, running: false };
  const onRowsChanged = (n: number) => {
    vacuum.changed += n;
    if (vacuum.changed < 500 + vacuum.analysed / 5 || vacuum.running || closed) return;
    vacuum.running = true;
    const now = Date.now();
    const full = now - vacuum.vacuumedAt > 60_000;
    setImmediate(() => {
      const changed = vacuum.changed;
      db.exec(full ? "VACUUM ANALYZE" : "ANALYZE")
        .then(() => {
          vacuum.analysed += changed;
          vacuum.changed -= changed;
          if (full) vacuum.vacuumedAt = now;
        })
        .catch(() => {})
        .finally(() => {
          vacuum.running = false;
        });
    });
  };
  const base = wrap(db as unknown as PGliteLike, onRowsChanged);
  return {
    kind: "pglite",
    query: base.query,
    exec: base.exec,
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return db.transaction((tx) => fn(wrap(tx as unknown as PGliteLike, onRowsChanged)));
    },
    async listen(channel, onNotify) {
      const unsub = await db.listen(channel, onNotify);
      return async () => {
        if (!closed) await unsub();
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      await db.close();
    },
  };
}
