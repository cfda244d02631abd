import { unlinkSync } from "node:fs";
import { mkdir, open, readFile, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PGlite, types } from "@electric-sql/pglite";
import { FraiseqlError } from "../errors.js";
import type { Database, Decide, Queryable, QueryResult, Statement } from "./driver.js";

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

/** The name of the lock file in a PGlite data directory: the pid of the process that has it open. */
export const PGLITE_LOCK_FILE = "fraiseql.lock";

/** Lock files this process holds, removed at exit if not released before. */
const heldLocks = new Set<string>();
let exitHookInstalled = false;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the data directory for this process. PGlite is one in-process PostgreSQL with no
 * locking of its own: a second process (or a second instance in this one) on the same directory
 * would read stale pages and could overwrite the first one's writes. A lock file left by a
 * process that is gone (SIGKILL, a crash) is taken over.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const path = resolve(join(dataDir, PGLITE_LOCK_FILE));
  for (let tries = 0; ; tries++) {
    try {
      const file = await open(path, "wx");
      try {
        await file.writeFile(`${process.pid}\n`);
      } finally {
        await file.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || tries > 0) throw err;
      const pid = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
      const ours = pid === process.pid && heldLocks.has(path);
      if (Number.isInteger(pid) && pid > 0 && (ours || (pid !== process.pid && processAlive(pid)))) {
        throw new FraiseqlError(
          "FQL_DB_IN_USE",
          `the embedded database ${dataDir} is open in process ${pid}${ours ? " (this one)" : ""}: ` +
            "stop that process first (a `serve` or `worker` holds it while it runs), or use PostgreSQL " +
            "([database] url) to run several processes on one database. If no such process exists, " +
            `delete ${path}.`,
        );
      }
      await unlink(path).catch(() => {});
    }
  }
  heldLocks.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const held of heldLocks) {
        try {
          unlinkSync(held);
        } catch {}
      }
    });
  }
  return async () => {
    if (!heldLocks.delete(path)) return;
    await unlink(path).catch(() => {});
  };
}

/**
 * Opens the embedded PostgreSQL (PGlite, in-process WASM). `dataDir` persists it on disk, for
 * this process alone (see {@link lockDataDir}); undefined keeps it in memory.
 */
export async function openPglite(dataDir?: string): Promise<Database> {
  let unlock: (() => Promise<void>) | undefined;
  if (dataDir !== undefined) {
    await mkdir(dataDir, { recursive: true });
    unlock = await lockDataDir(dataDir);
  }
  let db: PGlite;
  try {
    db = new PGlite(dataDir === undefined ? { parsers } : { dataDir, parsers });
    await db.waitReady;
  } catch (err) {
    await unlock?.();
    throw err;
  }
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
  const transaction = <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> =>
    db.transaction((tx) => fn(wrap(tx as unknown as PGliteLike, onRowsChanged)));
  return {
    kind: "pglite",
    query: base.query,
    exec: base.exec,
    transaction,
    readThenWrite<R, T>(read: Statement, decide: Decide<R, T>): Promise<T> {
      return transaction(async (tx) => {
        const { rows } = await tx.query<R>(read.text, read.params);
        const { write, value } = await decide(rows);
        if (write) await tx.query(write.text, write.params);
        return value;
      });
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
      try {
        await db.close();
      } finally {
        await unlock?.();
      }
    },
  };
}
