/**
 * The one registry of errors. Every error the product raises on purpose is a `FraiseqlError`
 * with a stable `code` from {@link ERROR_CODES}; user-facing codes render as one paragraph that
 * names the file, key and position, never a stack. `docs/errors.md` documents every code (a test
 * keeps the two in step).
 */

export interface ErrorCodeInfo {
  /** Short description, used as a heading in docs/errors.md. */
  readonly title: string;
  /** True when the condition may clear by itself and the operation should be tried again. */
  readonly retryable: boolean;
  /** True when the cause is the user's input (config, expression, command line): shown without a stack. */
  readonly user: boolean;
  /** HTTP status used when the error crosses the GraphQL/admin API. */
  readonly httpStatus: number;
}

export const ERROR_CODES = {
  FQL_CONFIG_SYNTAX: {
    title: "The config file is not valid TOML",
    retryable: false,
    user: true,
    httpStatus: 500,
  },
  FQL_CONFIG_INVALID: {
    title: "A config key is unknown, missing or has a bad value",
    retryable: false,
    user: true,
    httpStatus: 500,
  },
  FQL_CONFIG_NOT_FOUND: {
    title: "The config file does not exist",
    retryable: false,
    user: true,
    httpStatus: 500,
  },
  FQL_ENV_MISSING: {
    title: "A ${NAME} reference names an unset environment variable",
    retryable: false,
    user: true,
    httpStatus: 500,
  },
  FQL_CONDITION_SYNTAX: {
    title: "A condition cannot be parsed",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
  FQL_CONDITION_UNKNOWN_FIELD: {
    title: "A condition names a field the entity does not declare",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
  FQL_CONDITION_TYPE: {
    title: "A condition misuses a value's type",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
  FQL_CONDITION_LIMIT: {
    title: "A condition is too long or nested too deeply",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
  FQL_TEMPLATE_SYNTAX: {
    title: "A {{ }} template cannot be parsed",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
  FQL_TEMPLATE_UNKNOWN_FIELD: {
    title: "A template names a field the entity does not declare",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
  FQL_USAGE: { title: "The command line is not understood", retryable: false, user: true, httpStatus: 400 },
  FQL_NOT_FOUND: {
    title: "The named observer, entity or record does not exist",
    retryable: false,
    user: true,
    httpStatus: 404,
  },
  FQL_DB_CONNECT: { title: "The database cannot be reached", retryable: true, user: true, httpStatus: 503 },
  FQL_DB_QUERY: { title: "A database statement failed", retryable: false, user: false, httpStatus: 500 },
  FQL_DB_IN_USE: {
    title: "The embedded database is open in another process",
    retryable: true,
    user: true,
    httpStatus: 503,
  },
  FQL_MIGRATION_FAILED: {
    title: "A migration failed and was rolled back",
    retryable: false,
    user: true,
    httpStatus: 500,
  },
  FQL_SCHEMA_NEWER: {
    title: "The database was migrated by a newer version of fraiseql",
    retryable: false,
    user: true,
    httpStatus: 500,
  },
  FQL_DELIVERY_HTTP_STATUS: {
    title: "The receiver answered with a non-2xx status",
    retryable: true,
    user: false,
    httpStatus: 502,
  },
  FQL_DELIVERY_TIMEOUT: {
    title: "The receiver did not answer within the timeout",
    retryable: true,
    user: false,
    httpStatus: 504,
  },
  FQL_DELIVERY_CONNECTION: {
    title: "The receiver could not be connected to",
    retryable: true,
    user: false,
    httpStatus: 502,
  },
  FQL_DELIVERY_INVALID_REQUEST: {
    title: "The rendered request is invalid and was never sent",
    retryable: false,
    user: false,
    httpStatus: 500,
  },
  FQL_DLQ_WRITE: {
    title: "A dead letter could not be written; the delivery stays queued",
    retryable: true,
    user: false,
    httpStatus: 503,
  },
  FQL_GRAPHQL_INPUT: { title: "A GraphQL request is invalid", retryable: false, user: true, httpStatus: 400 },
  FQL_UNAUTHORIZED: {
    title: "A request to the API has missing or invalid credentials",
    retryable: false,
    user: true,
    httpStatus: 401,
  },
  FQL_SIGNATURE_INVALID: {
    title: "A webhook signature does not verify",
    retryable: false,
    user: true,
    httpStatus: 401,
  },
  FQL_DECRYPT_FAILED: {
    title: "An encrypted payload cannot be decrypted",
    retryable: false,
    user: true,
    httpStatus: 400,
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Where in a file or expression an error is. All parts optional; lines and columns are 1-based. */
export interface ErrorLocation {
  file?: string;
  key?: string;
  line?: number;
  column?: number;
  /** The expression text, for errors inside a condition or template. */
  expression?: string;
  /** 0-based offset into `expression`. */
  position?: number;
}

export interface FraiseqlErrorOptions extends ErrorLocation {
  cause?: unknown;
  /** Overrides the code's default retryability (e.g. an HTTP 400 is not retryable). */
  retryable?: boolean;
  /** Extra hint appended to the message ("did you mean status?"). */
  hint?: string;
  statusCode?: number;
  attempts?: number;
}

export class FraiseqlError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly location: ErrorLocation;
  readonly hint: string | undefined;
  readonly statusCode: number | undefined;
  readonly attempts: number | undefined;

  constructor(code: ErrorCode, message: string, options: FraiseqlErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FraiseqlError";
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    const { cause: _c, retryable: _r, hint, statusCode, attempts, ...location } = options;
    this.location = location;
    this.hint = hint;
    this.statusCode = statusCode;
    this.attempts = attempts;
  }

  get isUserError(): boolean {
    return ERROR_CODES[this.code].user;
  }

  /**
   * The one paragraph shown to a user: `file:line:column: key: message`, then the expression with
   * a caret under the position, then the hint.
   */
  describe(): string {
    const { file, key, line, column, expression, position } = this.location;
    let where = "";
    if (file !== undefined) where += file;
    if (line !== undefined)
      where += `${where ? ":" : "line "}${line}${column !== undefined ? `:${column}` : ""}`;
    const head = [where, key].filter((s) => s !== undefined && s !== "").join(": ");
    let text = `${head ? `${head}: ` : ""}${this.message}`;
    if (expression !== undefined) {
      text += `\n  ${expression}`;
      if (position !== undefined)
        text += `\n  ${" ".repeat(Math.max(0, Math.min(position, expression.length)))}^`;
    }
    if (this.hint) text += `\n${this.hint}`;
    return `${text}\n[${this.code}]`;
  }
}

export function isFraiseqlError(err: unknown, code?: ErrorCode): err is FraiseqlError {
  return err instanceof FraiseqlError && (code === undefined || err.code === code);
}

/** Re-raises `err` with a location filled in, keeping the code and message (used by config loaders). */
export function withLocation(err: FraiseqlError, location: ErrorLocation): FraiseqlError {
  const merged = new FraiseqlError(err.code, err.message, {
    ...err.location,
    ...Object.fromEntries(Object.entries(location).filter(([, v]) => v !== undefined)),
    cause: err.cause,
    retryable: err.retryable,
    ...(err.hint === undefined ? {} : { hint: err.hint }),
  });
  return merged;
}
