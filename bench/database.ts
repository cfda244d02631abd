/**
 * Benchmark databases: each figure that needs one gets a fresh `fraiseql_bench_<random>` database
 * on the server, dropped when the figure is done (or at the end of the run, on error or Ctrl-C).
 */

import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Database } from "../src/db/driver.js";
import { log, onCleanup } from "./resources.js";

/** A database created for the benchmark. */
export interface BenchDatabase {
  readonly name: string;
  /** Its connection URL. */
  readonly url: string;
  /** Drops it (connections are closed by force); runs at most once. */
  drop(): Promise<void>;
}

/** The PostgreSQL server the benchmark creates its databases on. */
export interface DatabaseServer {
  readonly url: string;
  readonly version: string;
  /** The server settings that matter to the figures (fsync, synchronous_commit, shared_buffers, ...). */
  readonly settings: Record<string, string>;
  /** Creates a fresh, empty database; it is dropped by `drop()` or at the end of the run. */
  create(): Promise<BenchDatabase>;
}

const SETTINGS_SQL = `SELECT name, setting FROM pg_settings
  WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'wal_level')`;

/** The URL with its password, if any, replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}

async function withAdmin<T>(serverUrl: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 3000 });
  admin.on("error", () => {});
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.end().catch(() => {});
  }
}

/** Connects to the server; undefined (and a log line) when it does not answer within 3 s. */
export async function connectServer(serverUrl: string): Promise<DatabaseServer | undefined> {
  let version: string;
  let settings: Record<string, string>;
  try {
    [version, settings] = await withAdmin(serverUrl, async (admin) => {
      const { rows } = await admin.query<{ server_version: string }>("SHOW server_version");
      const { rows: named } = await admin.query<{ name: string; setting: string }>(SETTINGS_SQL);
      return [
        rows[0]?.server_version ?? "unknown",
        Object.fromEntries(named.map((r) => [r.name, r.setting])),
      ];
    });
  } catch (err) {
    log(
      `no PostgreSQL reachable at ${redactUrl(serverUrl)} (${(err as Error).message}): running on PGlite only`,
    );
    return undefined;
  }
  return {
    url: serverUrl,
    version,
    settings,
    async create() {
      const name = `fraiseql_bench_${randomBytes(6).toString("hex")}`;
      await withAdmin(serverUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
      const drop = onCleanup(() =>
        withAdmin(serverUrl, async (admin) => {
          await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        }),
      );
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      return { name, url: url.toString(), drop };
    },
  };
}

/** Process ids of the server backends connected to `db`'s database (every client, not only `db`'s pool). */
export async function backendPids(db: Database): Promise<number[]> {
  const { rows } = await db.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
  );
  return rows.map((r) => r.pid);
}
