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

function wrap(target: PGliteLike): Queryable {
  return {
    async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const res = await target.query<R>(text, params as unknown[] | undefined);
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
  const base = wrap(db as unknown as PGliteLike);
  let closed = false;
  return {
    kind: "pglite",
    query: base.query,
    exec: base.exec,
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return db.transaction((tx) => fn(wrap(tx as unknown as PGliteLike)));
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
