import pg from "pg";
import { FraiseqlError } from "../errors.js";
import type { Database, Decide, HeldLock, Queryable, QueryResult, Statement } from "./driver.js";

/** Options of {@link openPostgres}. */
export interface PostgresOptions {
  /** Connections in the pool. (Default: 10) */
  max?: number;
  /** Label shown in pg_stat_activity. (Default: "fraiseql") */
  applicationName?: string;
}

function wrapQueryable(client: pg.PoolClient | pg.Pool): Queryable {
  return {
    async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const res = await client.query(text, params as unknown[] | undefined);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    },
    async exec(text: string): Promise<void> {
      await client.query(text);
    },
  };
}

/**
 * A string as an SQL literal, the same text as `pg.escapeLiteral` (quotes doubled; with a
 * backslash, an `E''` literal with backslashes doubled), built with native replaces instead of a
 * loop over its characters: routing inlines JSON of a few hundred deliveries.
 */
function escapeLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  return text.includes("\\") ? ` E'${quoted.replaceAll("\\", "\\\\")}'` : `'${quoted}'`;
}

/** A value as an SQL literal, for statements sent through the simple query protocol. */
export function sqlLiteral(value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  if (typeof value === "boolean") return value ? "TRUE" : "FALSE";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`not a finite number: ${value}`);
    return String(value);
  }
  if (typeof value === "string") return escapeLiteral(value);
  if (Array.isArray(value)) return `ARRAY[${value.map(sqlLiteral).join(", ")}]`;
  throw new TypeError(`no SQL literal for ${typeof value}`);
}

/** A statement's text with its `$n` parameters replaced by literals. */
export function inlineParams(statement: Statement): string {
  return statement.text.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= statement.params.length) throw new RangeError(`no parameter $${n}`);
    return sqlLiteral(statement.params[i]);
  });
}

/**
 * Runs `fn` on a pooled client that opens and commits a transaction; rolls back when it throws.
 * A checked-out client whose connection dies (server restart) emits "error"; without a listener
 * that would crash the process (the query in flight rejects on its own), and the client is then
 * dropped from the pool.
 */
async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  const onError = () => {
    broken = true;
  };
  client.on("error", onError);
  try {
    return await fn(client);
  } catch (err) {
    try {
      await client.query("ROLLBACK");
    } catch {
      broken = true;
    }
    throw err;
  } finally {
    client.off("error", onError);
    client.release(broken);
  }
}

/** Connects to a real PostgreSQL through a `pg` pool. */
export async function openPostgres(url: string, options: PostgresOptions = {}): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? "fraiseql",
  });
  // An idle client losing its connection (server restart) must not crash the process; the pool
  // replaces it on the next checkout.
  pool.on("error", () => {});
  try {
    const client = await pool.connect();
    client.release();
  } catch (err) {
    await pool.end().catch(() => {});
    throw new FraiseqlError("FQL_DB_CONNECT", `cannot connect to PostgreSQL: ${(err as Error).message}`, {
      cause: err,
      key: "database.url",
    });
  }
  const base = wrapQueryable(pool);
  const listeners: pg.Client[] = [];
  const holders = new Set<pg.Client>();

  return {
    kind: "postgresql",
    query: base.query,
    exec: base.exec,
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return inTransaction(pool, async (client) => {
        await client.query("BEGIN");
        const result = await fn(wrapQueryable(client));
        await client.query("COMMIT");
        return result;
      });
    },
    readThenWrite<R, T>(read: Statement, decide: Decide<R, T>): Promise<T> {
      return inTransaction(pool, async (client) => {
        const results = (await client.query(`BEGIN; ${inlineParams(read)}`)) as unknown as pg.QueryResult[];
        const rows = (results[results.length - 1]?.rows ?? []) as R[];
        const { write, value } = await decide(rows);
        await client.query(write ? `${inlineParams(write)}; COMMIT` : "COMMIT");
        return value;
      });
    },
    async holdLock(name: string): Promise<HeldLock | undefined> {
      const client = new pg.Client({ connectionString: url, application_name: "fraiseql-worker" });
      let markLost: () => void = () => {};
      const lost = new Promise<void>((resolve) => {
        markLost = resolve;
      });
      client.on("error", () => markLost());
      client.on("end", () => markLost());
      await client.connect();
      try {
        const { rows } = await client.query<{ ok: boolean }>(
          "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok",
          [name],
        );
        if (!rows[0]?.ok) {
          await client.end().catch(() => {});
          return undefined;
        }
      } catch (err) {
        await client.end().catch(() => {});
        throw err;
      }
      holders.add(client);
      return {
        lost,
        async release() {
          holders.delete(client);
          await client.end().catch(() => {});
        },
      };
    },
    async listen(channel, onNotify) {
      const client = new pg.Client({ connectionString: url, application_name: "fraiseql-listen" });
      client.on("error", () => {});
      await client.connect();
      client.on("notification", (msg) => {
        if (msg.channel === channel) onNotify(msg.payload ?? "");
      });
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      listeners.push(client);
      return async () => {
        const i = listeners.indexOf(client);
        if (i >= 0) listeners.splice(i, 1);
        await client.end().catch(() => {});
      };
    },
    async close() {
      await Promise.all(listeners.splice(0).map((c) => c.end().catch(() => {})));
      await Promise.all([...holders].map((c) => c.end().catch(() => {})));
      holders.clear();
      await pool.end();
    },
  };
}
