/**
 * Logs: pino, one JSON object per line by default (what log shippers read), a readable format on
 * a terminal. Every line is scrubbed of the config's secrets (the values read from `${ENV}`,
 * signing secrets, encryption keys, tokens) before it is written, and credential headers are
 * blanked by name, so no secret reaches a log whatever a caller passes in.
 */

import diagnostics from "node:diagnostics_channel";
import pino, { type DestinationStream, type Logger as PinoLogger } from "pino";
import pretty from "pino-pretty";
import type { ResolvedConfig } from "../config/types.js";
import { type AttemptRecord, type ClaimedDelivery, channels } from "../delivery/dispatcher.js";
import type { RetryDecision } from "../delivery/retry.js";
import { FraiseqlError } from "../errors.js";
import { createRedactor, REDACTED, type Redactor } from "../redact.js";

/** A pino logger. */
export type Logger = PinoLogger;

/** Log line formats. */
export type LogFormat = "json" | "pretty";

/** Levels accepted by `FRAISEQL_LOG_LEVEL`. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Where lines are written. (Default: standard output) */
  stream?: DestinationStream | NodeJS.WritableStream;
  /** Minimum level. (Default: `FRAISEQL_LOG_LEVEL`, else "info") */
  level?: string;
  /**
   * `json`: one JSON object per line; `pretty`: a readable line per entry. (Default:
   * `FRAISEQL_LOG_FORMAT` when set, else `pretty` when standard output is a terminal, else `json`)
   */
  format?: LogFormat;
  /** Environment read for the defaults above. (Default: process.env) */
  env?: NodeJS.ProcessEnv;
  /** Bindings added to every line. (Default: none) */
  bindings?: Record<string, unknown>;
}

/** Credential headers, blanked wherever a `headers` object is logged (pino `redact` paths). */
const REDACT_PATHS = [
  "headers.authorization",
  "headers.Authorization",
  "headers.cookie",
  "headers.Cookie",
  'headers["x-api-key"]',
  'headers["X-Api-Key"]',
  "*.headers.authorization",
  "*.headers.Authorization",
  "*.headers.cookie",
  "*.headers.Cookie",
  '*.headers["x-api-key"]',
  '*.headers["X-Api-Key"]',
];

/** Deepest nesting of a logged object that is walked; deeper values are replaced. */
const MAX_DEPTH = 10;

/**
 * A deep copy of `value` with secrets replaced in every string, credential headers blanked in
 * any `headers` object, and errors turned into plain `{ type, message, stack, code }` objects.
 */
function scrub(redactor: Redactor, value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === "string") return redactor.text(value);
  if (value === null || typeof value !== "object") return value;
  if (seen.has(value)) return "[Circular]";
  if (depth >= MAX_DEPTH) return "[Object]";
  seen.add(value);
  try {
    if (value instanceof Error) {
      return scrub(redactor, pino.stdSerializers.err(value), depth + 1, seen);
    }
    if (Array.isArray(value)) return value.map((v) => scrub(redactor, v, depth + 1, seen));
    if (value instanceof Date) return value;
    if (Buffer.isBuffer(value)) return `[Buffer ${value.length} bytes]`;
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (key.toLowerCase() === "headers" && v !== null && typeof v === "object" && !Array.isArray(v)) {
        const headers: Record<string, string> = {};
        for (const [name, h] of Object.entries(v)) headers[name] = String(h);
        out[key] = redactor.headers(headers);
      } else {
        out[key] = scrub(redactor, v, depth + 1, seen);
      }
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

function resolveLevel(options: LoggerOptions, env: NodeJS.ProcessEnv): string {
  const level = (options.level ?? env.FRAISEQL_LOG_LEVEL ?? "info").trim().toLowerCase() || "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new FraiseqlError("FQL_CONFIG_INVALID", `unknown log level "${level}"`, {
      key: "FRAISEQL_LOG_LEVEL",
      hint: `Levels: ${LOG_LEVELS.join(", ")}.`,
    });
  }
  return level;
}

function resolveFormat(options: LoggerOptions, env: NodeJS.ProcessEnv): LogFormat {
  const format = options.format ?? env.FRAISEQL_LOG_FORMAT?.trim().toLowerCase();
  if (format === undefined || format === "") return process.stdout.isTTY === true ? "pretty" : "json";
  if (format !== "json" && format !== "pretty") {
    throw new FraiseqlError("FQL_CONFIG_INVALID", `unknown log format "${format}"`, {
      key: "FRAISEQL_LOG_FORMAT",
      hint: "Formats: json, pretty.",
    });
  }
  return format;
}

/**
 * Creates the process logger. Secrets are removed three ways: the arguments of every call are
 * scrubbed (strings, nested objects, errors; `headers` objects lose their credential headers by
 * name), pino's `redact` blanks `headers.authorization`-like paths, and each finished line is
 * scrubbed once more (in its JSON-escaped form) just before it is written, which covers child
 * bindings and serializers too.
 *
 * @throws FraiseqlError FQL_CONFIG_INVALID for an unknown `FRAISEQL_LOG_LEVEL` or `FRAISEQL_LOG_FORMAT`.
 */
export function createLogger(config: Pick<ResolvedConfig, "secrets">, options: LoggerOptions = {}): Logger {
  const env = options.env ?? process.env;
  const level = resolveLevel(options, env);
  const format = resolveFormat(options, env);
  const redactor = createRedactor(config.secrets);
  // A secret holding a quote or a backslash appears escaped in the JSON line.
  const lineRedactor = createRedactor(config.secrets.map((s) => JSON.stringify(s).slice(1, -1)));

  let destination: DestinationStream | NodeJS.WritableStream;
  if (format === "pretty") {
    destination = pretty({
      destination: options.stream ?? 1,
      sync: true,
      colorize: options.stream === undefined && process.stdout.isTTY === true,
      translateTime: "SYS:HH:MM:ss.l",
      ignore: "pid,hostname",
      singleLine: true,
    });
  } else {
    destination = options.stream ?? pino.destination({ dest: 1, sync: true });
  }

  const logger = pino(
    {
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      // Errors arrive already serialized (and scrubbed) by the logMethod hook.
      serializers: { err: (err: unknown) => err },
      hooks: {
        logMethod(args, method) {
          // pino files an Error given first under `err`; it is serialized here, so keep that place.
          const clean = args.map((a, i) =>
            scrub(redactor, i === 0 && a instanceof Error ? { err: a } : a),
          ) as Parameters<typeof method>;
          method.apply(this, clean);
        },
        streamWrite: (line) => lineRedactor.text(line),
      },
      formatters: {
        bindings: (bindings) => scrub(redactor, bindings) as Record<string, unknown>,
      },
    },
    destination as DestinationStream,
  );
  return options.bindings ? logger.child(options.bindings) : logger;
}

/** Options of {@link subscribeLogs}. */
export interface SubscribeLogsOptions {
  /** Characters of a failed attempt's response body that are logged. (Default: 200) */
  excerptChars?: number;
}

/**
 * Logs what the dispatcher reports on its diagnostics channels:
 * - a failed attempt at `warn`: observer, delivery id (and batch id for a batched request),
 *   attempt, reason, HTTP status, error, the first characters of the response, and the retry
 *   delay or `final: true`;
 * - a dead-lettered delivery at `error`: observer, delivery id, event id, attempts, reason;
 * - a dispatcher error (database unreachable, DLQ write failed...) at `error`;
 * - a successful attempt and each routed batch at `debug`.
 * Request bodies and headers are never logged. Returns the function that unsubscribes.
 */
export function subscribeLogs(logger: Logger, options: SubscribeLogsOptions = {}): () => void {
  const excerptChars = options.excerptChars ?? 200;
  const log = logger.child({ component: "dispatcher" });

  const onAttempt = (message: unknown) => {
    const { delivery, result, decision, batchId } = message as AttemptRecord;
    const status =
      result.outcome.kind === "success" || result.outcome.kind === "http" ? result.outcome.status : undefined;
    const base = {
      observer: delivery.observer,
      delivery: delivery.id,
      action: delivery.actionIndex,
      attempt: delivery.attempt,
      // A batch is one request for several deliveries: its id is the X-FraiseQL-Delivery sent.
      ...(batchId === undefined ? {} : { batch: batchId }),
      durationMs: Math.round(result.durationMs),
      ...(status === undefined ? {} : { status }),
    };
    if (decision.action === "succeeded") {
      log.debug(base, "webhook delivered");
      return;
    }
    const response =
      result.excerpt === undefined || result.excerpt === ""
        ? undefined
        : result.excerpt.slice(0, excerptChars);
    log.warn(
      {
        ...base,
        reason: decision.reason,
        ...(result.error === undefined ? {} : { error: result.error }),
        ...(response === undefined ? {} : { response }),
        ...(decision.action === "retry" ? { retryInMs: decision.delayMs } : { final: true }),
      },
      decision.action === "retry" ? "webhook attempt failed, will retry" : "webhook attempt failed",
    );
  };
  const onSettled = (message: unknown) => {
    const { delivery, decision } = message as { delivery: ClaimedDelivery; decision: RetryDecision };
    if (decision.action !== "dead") return;
    log.error(
      {
        observer: delivery.observer,
        delivery: delivery.id,
        event: delivery.eventId,
        entity: delivery.event.entity,
        attempts: delivery.attempt,
        reason: decision.reason,
      },
      "delivery dead-lettered",
    );
  };
  const onRouted = (message: unknown) => {
    const { events, deliveries } = message as {
      events: number | readonly unknown[];
      deliveries: readonly unknown[];
    };
    log.debug(
      { events: typeof events === "number" ? events : events.length, deliveries: deliveries.length },
      "events routed",
    );
  };
  const onError = (message: unknown) => {
    const { error } = message as { error: unknown };
    log.error({ err: error }, "dispatcher error");
  };

  const subscriptions: [string | symbol, (message: unknown) => void][] = [
    [channels.attempt.name, onAttempt],
    [channels.settled.name, onSettled],
    [channels.routed.name, onRouted],
    [channels.error.name, onError],
  ];
  for (const [name, fn] of subscriptions) diagnostics.subscribe(name, fn);
  let subscribed = true;
  return () => {
    if (!subscribed) return;
    subscribed = false;
    for (const [name, fn] of subscriptions) diagnostics.unsubscribe(name, fn);
  };
}
