import { readdir, readFile } from "node:fs/promises";
import { FraiseqlError } from "../errors.js";
import type { Database, Queryable } from "./driver.js";

/** A numbered, forward-only migration: `NNN_name.sql` in `src/db/migrations/`. */
export interface Migration {
  id: number;
  name: string;
  sql: string;
}

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Reads the migrations shipped with the package, in order. */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      id: Number.parseInt(file, 10),
      name: file.replace(/\.sql$/, ""),
      sql: await readFile(new URL(file, MIGRATIONS_DIR), "utf8"),
    })),
  );
}

/** The NOTIFY channel the capture trigger wakes idle dispatchers on. */
export function wakeChannel(schema: string): string {
  return `fraiseql_wake_${schema.toLowerCase()}`;
}

/** The key of the advisory lock that serialises migrations across processes. */
export const MIGRATION_LOCK_KEY = 7_355_608_100;

export interface MigrateOptions {
  /** Schema of the internal tables. (Default: "fraiseql") */
  schema?: string;
  /** Runs inside the migration transaction, after the numbered migrations, under the same lock. */
  after?: (tx: Queryable) => Promise<void>;
}

/**
 * Applies every pending migration in one transaction under an advisory lock, so concurrent
 * processes migrate once and a failure leaves nothing half-applied.
 * @returns the names of the migrations applied now.
 */
export async function migrate(db: Database, options: MigrateOptions = {}): Promise<string[]> {
  const schema = options.schema ?? "fraiseql";
  const s = quoteIdent(schema);
  const migrations = await loadMigrations();
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
    await tx.exec(
      `CREATE SCHEMA IF NOT EXISTS ${s};
       CREATE TABLE IF NOT EXISTS ${s}.migrations (
         id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());`,
    );
    const { rows } = await tx.query<{ id: number; name: string }>(`SELECT id, name FROM ${s}.migrations`);
    const done = new Set(rows.map((r) => r.id));
    // A process older than the schema would run SQL against tables, columns and functions that
    // are no longer what it expects: it stops before starting anything.
    const known = new Set(migrations.map((m) => m.id));
    const unknown = rows.filter((r) => !known.has(r.id)).sort((a, b) => a.id - b.id);
    if (unknown.length > 0) {
      const latest = migrations.at(-1)?.name ?? "none";
      throw new FraiseqlError(
        "FQL_SCHEMA_NEWER",
        `schema ${schema} has migration ${unknown.map((r) => r.name).join(", ")}, which this version of fraiseql does not know (its latest is ${latest})`,
        {
          hint: "A newer fraiseql migrated this database. Run that version (or newer) in every process; migrations are forward-only, so going back needs the database as it was before.",
        },
      );
    }
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      try {
        await tx.exec(
          m.sql
            .replaceAll("__SCHEMA__", s)
            .replaceAll("__WAKE_CHANNEL__", `'${wakeChannel(schema).replaceAll("'", "''")}'`),
        );
      } catch (err) {
        throw new FraiseqlError(
          "FQL_MIGRATION_FAILED",
          `migration ${m.name} failed: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      await tx.query(`INSERT INTO ${s}.migrations (id, name) VALUES ($1, $2)`, [m.id, m.name]);
      applied.push(m.name);
    }
    if (options.after) await options.after(tx);
    return applied;
  });
}
