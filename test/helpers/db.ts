import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Database } from "../../src/db/driver.js";
import { openPostgres } from "../../src/db/pg.js";
import { openPglite } from "../../src/db/pglite.js";

/** The URL of the real PostgreSQL the suite must use, when set (CI always sets it). */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;

export interface TestDatabase extends Database {
  /** Connection URL of this fresh database (undefined on PGlite). */
  readonly url: string | undefined;
}

/**
 * A fresh, empty database for one test file: a new PostgreSQL database created on the server
 * named by TEST_DATABASE_URL (dropped on close), or an in-memory PGlite when that is unset.
 */
export async function openTestDatabase(): Promise<TestDatabase> {
  if (!TEST_DATABASE_URL) {
    const db = await openPglite();
    return Object.assign(db, { url: undefined });
  }
  const name = `fraiseql_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  const db = await openPostgres(url.toString());
  const close = db.close.bind(db);
  return Object.assign(db, {
    url: url.toString(),
    async close() {
      await close();
      const drop = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await drop.connect();
      await drop.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await drop.end();
    },
  });
}
