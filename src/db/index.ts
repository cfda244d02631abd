import type { Database } from "./driver.js";
import { openPostgres } from "./pg.js";
import { openPglite } from "./pglite.js";

export type { Database, Queryable, QueryResult } from "./driver.js";
export { migrate } from "./migrate.js";
export { openPostgres } from "./pg.js";
export { openPglite } from "./pglite.js";

/** Opens PostgreSQL when `url` is set, else the embedded PGlite persisted in `dataDir`. */
export function openDatabase(options: {
  url?: string | undefined;
  dataDir?: string | undefined;
}): Promise<Database> {
  return options.url ? openPostgres(options.url) : openPglite(options.dataDir);
}

/** Quotes an SQL identifier. */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
