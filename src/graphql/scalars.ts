import { GraphQLError, GraphQLScalarType, Kind, valueFromASTUntyped } from "graphql";

// Date, or date and time with an optional fraction and offset: what PostgreSQL's timestamptz input
// accepts unambiguously. A time without an offset is read in the database session's time zone.
const ISO_8601 =
  /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

function parseDateTime(value: unknown): string {
  if (
    typeof value !== "string" ||
    !ISO_8601.test(value) ||
    Number.isNaN(Date.parse(value.replace(" ", "T")))
  ) {
    throw new GraphQLError(
      `DateTime must be an ISO 8601 string such as "2024-05-01T12:00:00Z"; got ${JSON.stringify(value)}`,
      {
        extensions: { code: "FQL_GRAPHQL_INPUT" },
      },
    );
  }
  // Passed to PostgreSQL as written, so microseconds and the offset survive unchanged.
  return value;
}

/**
 * `DateTime`: an ISO 8601 string. Output is UTC with milliseconds (`2024-05-01T12:00:00.000Z`);
 * input is a date (`2024-05-01`) or a date and time with an optional offset.
 */
export const GraphQLDateTime = new GraphQLScalarType({
  name: "DateTime",
  description: "An ISO 8601 date and time, e.g. 2024-05-01T12:00:00.000Z.",
  serialize(value) {
    const date =
      value instanceof Date
        ? value
        : typeof value === "string" || typeof value === "number"
          ? new Date(value)
          : undefined;
    if (date === undefined || Number.isNaN(date.getTime())) {
      throw new GraphQLError(`DateTime cannot represent ${JSON.stringify(value)}`);
    }
    return date.toISOString();
  },
  parseValue: parseDateTime,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) {
      throw new GraphQLError("DateTime must be given as a string", {
        nodes: ast,
        extensions: { code: "FQL_GRAPHQL_INPUT" },
      });
    }
    return parseDateTime(ast.value);
  },
});

/** `JSON`: any JSON value (object, array, string, number, boolean or null), in and out. */
export const GraphQLJSON = new GraphQLScalarType({
  name: "JSON",
  description: "Any JSON value.",
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (ast, variables) => valueFromASTUntyped(ast, variables),
});
