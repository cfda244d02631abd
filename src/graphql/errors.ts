import { GraphQLError } from "graphql";
import type { ErrorCode } from "../errors.js";

interface PgErrorLike {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
  column?: unknown;
  constraint?: unknown;
}

/** Builds the GraphQL error a client sees: a message and `extensions.code`, nothing else. */
export function clientError(
  message: string,
  code: ErrorCode = "FQL_GRAPHQL_INPUT",
  extra: Record<string, unknown> = {},
) {
  return new GraphQLError(message, { extensions: { code, ...extra } });
}

// Messages of SQLSTATE class 22 ("data exception") name the type and the offending value but
// never the statement, so they are safe and useful to show as they are.
const DATA_EXCEPTIONS = new Set([
  "22P02",
  "22007",
  "22008",
  "22003",
  "22001",
  "22023",
  "22021",
  "22P05",
  "2201W",
  "2201X",
]);

/**
 * Turns a PostgreSQL error raised by an entity statement into a client error that names the field
 * at fault, without the SQL text, parameters or stack. Errors that are not the client's doing
 * become "internal error" (FQL_DB_QUERY) or "database unavailable" (FQL_DB_CONNECT); the caller
 * reports those to its own log.
 * @param declared the entity's declared field names, to tell fields from undeclared columns.
 */
export function pgErrorToGraphql(
  err: unknown,
  entity: string,
  declared: ReadonlySet<string>,
): { error: GraphQLError; internal: boolean } {
  const pg = (typeof err === "object" && err !== null ? err : {}) as PgErrorLike;
  const sqlstate = typeof pg.code === "string" ? pg.code : "";
  const detail = typeof pg.detail === "string" ? pg.detail : undefined;
  const column = typeof pg.column === "string" ? pg.column : undefined;
  const constraint = typeof pg.constraint === "string" ? pg.constraint : undefined;
  const input = (message: string, extra: Record<string, unknown> = {}) => ({
    error: clientError(message, "FQL_GRAPHQL_INPUT", { entity, ...extra }),
    internal: false,
  });
  switch (sqlstate) {
    case "23502":
      return column !== undefined && !declared.has(column)
        ? input(`column "${column}" of ${entity}'s table is required but is not a declared field`, {
            field: column,
          })
        : input(`field "${column ?? "?"}" is required`, column === undefined ? {} : { field: column });
    case "23505":
      return input(
        detail !== undefined
          ? `a ${entity} with the same value already exists: ${detail}`
          : `a ${entity} with the same value already exists (unique constraint "${constraint ?? "?"}")`,
        constraint === undefined ? {} : { constraint },
      );
    case "23503":
      return input(
        `foreign key constraint "${constraint ?? "?"}" is violated${detail !== undefined ? `: ${detail}` : ""}`,
        constraint === undefined ? {} : { constraint },
      );
    case "23514":
      return input(
        `check constraint "${constraint ?? "?"}" is violated`,
        constraint === undefined ? {} : { constraint },
      );
    case "23P01":
      return input(
        `exclusion constraint "${constraint ?? "?"}" is violated`,
        constraint === undefined ? {} : { constraint },
      );
  }
  if (DATA_EXCEPTIONS.has(sqlstate) && typeof pg.message === "string") {
    return input(`invalid value: ${pg.message}`);
  }
  if (sqlstate === "40001" || sqlstate === "40P01") {
    return {
      error: clientError("the write conflicted with another transaction; try again", "FQL_DB_QUERY"),
      internal: false,
    };
  }
  const connection =
    sqlstate.startsWith("08") ||
    sqlstate === "57P01" ||
    sqlstate === "57P03" ||
    (sqlstate === "" &&
      /ECONNREFUSED|ECONNRESET|ETIMEDOUT|terminated|not queryable|closed/i.test(String(pg.message)));
  if (connection) return { error: clientError("database unavailable", "FQL_DB_CONNECT"), internal: true };
  return { error: clientError("internal error", "FQL_DB_QUERY"), internal: true };
}
