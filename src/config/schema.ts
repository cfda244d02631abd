// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${NAME}" is the config's environment reference syntax, not a mistaken template literal.
/**
 * THE config schema. One function, {@link resolveConfig}, turns a TOML-shaped object (parsed from
 * `fraiseql.toml`, written with {@link defineConfig}, or both) into the deep-frozen
 * {@link ResolvedConfig}: unknown keys refused (with "did you mean"), types and ranges checked,
 * defaults applied, `${ENV}` substituted, units parsed, entity references, conditions and
 * templates compiled. The first error found is thrown as a `FraiseqlError` carrying the key
 * path and, for TOML, the file, line and column.
 *
 * The validator is a handful of readers (`integer`, `duration`, `oneOf`, `table`, ...) composed
 * declaratively below; cross-key rules are checked after the tables are read.
 */

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { allowedHostProblem } from "../delivery/address-policy.js";
import { parseEncryptionKey } from "../delivery/encryption.js";
import { standardWebhookKey } from "../delivery/signing.js";
import { type ErrorCode, type ErrorLocation, FraiseqlError, withLocation } from "../errors.js";
import { compileCondition } from "../observers/condition.js";
import { compileBodyTemplate, compileStringTemplate } from "../observers/template.js";
import { isDefinition, sourceOf } from "./define.js";
import { type EnvContext, expandEnv, hasEnvReference } from "./env.js";
import { formatPath, locateKey, type PathSegment } from "./locate.js";
import type {
  BatchPolicy,
  EncryptionPolicy,
  EntityModel,
  EventKind,
  FieldModel,
  ObserverModel,
  ResolvedConfig,
  RetryPolicy,
  Scalar,
  SigningConfig,
  WebhookAction,
} from "./types.js";
import { SCALARS } from "./types.js";
import { formatDuration, parseDuration, parseSize } from "./units.js";

/** Options of {@link resolveConfig}. */
export interface ResolveOptions {
  /** The TOML file the raw config came from; recorded absolute, named in errors as given. (Default: none) */
  readonly file?: string | undefined;
  /** How errors name the file. (Default: `file` as given) */
  readonly displayFile?: string | undefined;
  /** The TOML text, so that errors carry line and column. (Default: none) */
  readonly source?: string | undefined;
  /** Variables for `${NAME}`. (Default: `process.env`) */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Directory for `include` and `${file:...}` paths. (Default: the file's directory, else the working directory) */
  readonly baseDir?: string;
  /**
   * Allow `[server.auth] mode = "none"` on a host that is not loopback (`fraiseql serve
   * --insecure`), for an API reached only through an authenticating proxy. (Default: false)
   */
  readonly insecure?: boolean;
  /** Entities and observers declared in TypeScript modules, appended after the TOML ones. */
  readonly extra?: {
    readonly entities?: readonly unknown[];
    readonly observers?: readonly unknown[];
  };
}

type Path = readonly PathSegment[];

interface Origin {
  readonly file: string | undefined;
  readonly source: string | undefined;
}

/** Carries where values come from (for error positions) and the `${ENV}` state. */
class Ctx {
  constructor(
    readonly origin: Origin,
    readonly env: EnvContext,
  ) {}

  /** The same env state, with errors located in another file (a TypeScript module). */
  from(origin: Origin): Ctx {
    return new Ctx(origin, this.env);
  }

  where(path: Path): ErrorLocation {
    const location: ErrorLocation = { key: formatPath(path) };
    if (this.origin.file !== undefined) location.file = this.origin.file;
    const position = this.origin.source === undefined ? undefined : locateKey(this.origin.source, path);
    if (position) {
      location.line = position.line;
      location.column = position.column;
    }
    return location;
  }

  fail(path: Path, message: string, hint?: string, code: ErrorCode = "FQL_CONFIG_INVALID"): never {
    throw new FraiseqlError(code, message, { ...this.where(path), ...(hint === undefined ? {} : { hint }) });
  }

  /** Runs `fn`, giving any `FraiseqlError` it throws the location of `path`. */
  at<T>(path: Path, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof FraiseqlError) throw withLocation(err, this.where(path));
      throw err;
    }
  }

  expand(text: string, path: Path): string {
    return this.at(path, () => expandEnv(text, this.env, formatPath(path), isTemplatePath(path)));
  }

  secret(value: string | undefined): void {
    if (value !== undefined && value !== "") this.env.secrets.add(value);
  }

  /** Checks that `value` is a table with only `known` keys and returns it. Absent is empty. */
  record(value: unknown, path: Path, known: readonly string[], what = "table"): Record<string, unknown> {
    if (value === undefined) return {};
    if (!isPlainObject(value)) this.fail(path, `must be a ${what}, got ${typeName(value)}`);
    const branded = isDefinition(value);
    for (const key of Object.keys(value)) {
      if (branded && key === "kind") continue;
      if (!known.includes(key)) {
        const at = path.length === 0 ? "at the top level" : `in [${formatPath(path)}]`;
        const guess = suggest(key, known);
        // In TOML every key after a [table] header belongs to that table, a classic trap for `include`.
        const misplaced =
          path.length > 0 && TOP_KEYS.includes(key)
            ? `"${key}" is a top-level key: move it above the first [table] header. `
            : "";
        this.fail(
          [...path, key],
          `unknown key "${key}" ${at}`,
          `${misplaced}${guess === undefined ? "" : `did you mean "${guess}"? `}valid keys: ${known.join(", ")}`,
        );
      }
    }
    return value;
  }
}

// ---------------------------------------------------------------------------------------------
// Readers: each checks one value and returns it converted.

type Reader<T> = (value: unknown, path: Path, ctx: Ctx) => T;

interface Field<T> {
  readonly read: Reader<T>;
  /**
   * Absent value: a default `value`, undefined (`optional`), or what the reader makes of an
   * absent value (`read`: a table fills in its defaults). Required keys are checked by hand.
   */
  readonly fallback: { readonly value: T } | "optional" | "read";
}

type AnyField = Field<unknown>;
type CamelCase<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;
type TableOf<S extends Record<string, AnyField>> = {
  [K in keyof S & string as CamelCase<K>]: S[K] extends Field<infer T> ? T : never;
};

/** A key with a default. */
function dflt<T>(read: Reader<T>, value: T): Field<T> {
  return { read, fallback: { value } };
}
/** A key that may be absent (undefined). */
function opt<T>(read: Reader<T>): Field<T | undefined> {
  return { read, fallback: "optional" };
}
/** A nested table: absent reads as empty, so its own defaults apply. */
function sub<T>(read: Reader<T>): Field<T> {
  return { read, fallback: "read" };
}

function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** A table with fixed keys, read into an object with camelCase keys. */
function table<S extends Record<string, AnyField>>(shape: S): Reader<TableOf<S>> {
  const known = Object.keys(shape);
  return (value: unknown, path: Path, ctx: Ctx) => {
    const record = ctx.record(value, path, known);
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(shape)) {
      const given = record[key];
      if (given !== undefined || field.fallback === "read")
        out[camel(key)] = field.read(given, [...path, key], ctx);
      else out[camel(key)] = field.fallback === "optional" ? undefined : field.fallback.value;
    }
    return out as TableOf<S>;
  };
}

/** The same table with every key optional and no defaults (for overrides). */
function partial<S extends Record<string, AnyField>>(
  shape: S,
): { [K in keyof S]: Field<FieldValue<S[K]> | undefined> } {
  const out: Record<string, AnyField> = {};
  for (const [key, field] of Object.entries(shape)) out[key] = opt(field.read);
  return out as { [K in keyof S]: Field<FieldValue<S[K]> | undefined> };
}
type FieldValue<F> = F extends Field<infer T> ? T : never;

/** Reads a string and substitutes `${ENV}`; returns the substituted and the written text. */
function readText(value: unknown, path: Path, ctx: Ctx): { text: string; written: string } {
  if (typeof value !== "string") ctx.fail(path, `must be a string, got ${typeName(value)}`);
  return { text: ctx.expand(value, path), written: value };
}

function string(check?: (text: string) => string | undefined, hint?: string): Reader<string> {
  return (value: unknown, path: Path, ctx: Ctx) => {
    const { text, written } = readText(value, path, ctx);
    const problem = check?.(text);
    if (problem !== undefined) ctx.fail(path, `${problem} (got ${quoteWritten(text, written)})`, hint);
    return text;
  };
}

const nonEmpty = string((s) => (s.trim() === "" ? "must not be empty" : undefined));

/** Shows a value in a message, but never a value that came from the environment. */
function quoteWritten(text: string, written: string): string {
  return text === written ? JSON.stringify(text) : `${JSON.stringify(written)} after substitution`;
}

/** Numbers may be written as `"${PORT}"`: the substituted text is then parsed. */
function numeric(value: unknown, path: Path, ctx: Ctx, integer: boolean): number {
  if (typeof value === "string" && hasEnvReference(value)) {
    const text = ctx.expand(value, path).trim();
    const parsed = Number(text);
    if (text === "" || !Number.isFinite(parsed)) {
      ctx.fail(
        path,
        `must be a ${integer ? "whole " : ""}number, got ${JSON.stringify(value)} after substitution`,
      );
    }
    return parsed;
  }
  if (typeof value !== "number" || Number.isNaN(value)) {
    const hint =
      typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))
        ? "remove the quotes"
        : undefined;
    ctx.fail(path, `must be a number, got ${typeName(value)}`, hint);
  }
  return value;
}

function integer(min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): Reader<number> {
  return (value: unknown, path: Path, ctx: Ctx) => {
    const n = numeric(value, path, ctx, true);
    if (!Number.isInteger(n)) ctx.fail(path, `must be a whole number, got ${n}`);
    if (n < min || n > max) ctx.fail(path, `must be ${rangeText(min, max)}, got ${n}`);
    return n;
  };
}

function number(min: number, max = Number.POSITIVE_INFINITY, minExclusive = false): Reader<number> {
  return (value: unknown, path: Path, ctx: Ctx) => {
    const n = numeric(value, path, ctx, false);
    if (n < min || n > max || (minExclusive && n === min)) {
      ctx.fail(path, `must be ${minExclusive ? `greater than ${min}` : rangeText(min, max)}, got ${n}`);
    }
    return n;
  };
}

function rangeText(min: number, max: number): string {
  if (max >= Number.MAX_SAFE_INTEGER) return `>= ${min}`;
  if (min <= Number.MIN_SAFE_INTEGER) return `<= ${max}`;
  return `between ${min} and ${max}`;
}

const boolean: Reader<boolean> = (value: unknown, path: Path, ctx: Ctx) => {
  if (typeof value === "string" && hasEnvReference(value)) {
    const text = ctx.expand(value, path).trim().toLowerCase();
    if (text === "true" || text === "false") return text === "true";
    ctx.fail(path, `must be true or false, got ${JSON.stringify(value)} after substitution`);
  }
  if (typeof value !== "boolean") {
    ctx.fail(
      path,
      `must be true or false, got ${typeName(value)}`,
      typeof value === "string" ? "remove the quotes" : undefined,
    );
  }
  return value;
};

const duration: Reader<number> = (value: unknown, path: Path, ctx: Ctx) => {
  if (typeof value === "number") {
    ctx.fail(
      path,
      `must be a duration with a unit, got the bare number ${value}`,
      `durations carry their unit: write "${value}s" or "${value}ms"`,
    );
  }
  const { text } = readText(value, path, ctx);
  return ctx.at(path, () => parseDuration(text));
};

const size: Reader<number> = (value: unknown, path: Path, ctx: Ctx) => {
  if (typeof value === "number")
    ctx.fail(path, `must be a size with a unit, got the bare number ${value}`, `write e.g. "${value}MB"`);
  const { text } = readText(value, path, ctx);
  return ctx.at(path, () => parseSize(text));
};

/** One of `values`; with `anyCase`, matched case-insensitively and returned as declared. */
function oneOf<T extends string>(values: readonly T[], anyCase = false): Reader<T> {
  return (value: unknown, path: Path, ctx: Ctx) => {
    const { text } = readText(value, path, ctx);
    const found = values.find((v) => v === text || (anyCase && v.toLowerCase() === text.toLowerCase()));
    if (found !== undefined) return found;
    const guess = suggest(text, values);
    ctx.fail(
      path,
      `must be one of ${values.map((v) => JSON.stringify(v)).join(", ")}, got ${JSON.stringify(text)}`,
      guess === undefined ? undefined : `did you mean "${guess}"?`,
    );
  };
}

function list<T>(item: Reader<T>, minLength = 0): Reader<T[]> {
  return (value: unknown, path: Path, ctx: Ctx) => {
    if (!Array.isArray(value)) ctx.fail(path, `must be an array, got ${typeName(value)}`);
    if (value.length < minLength)
      ctx.fail(path, `must hold at least ${minLength} item${minLength === 1 ? "" : "s"}`);
    return value.map((v, i) => item(v, [...path, i], ctx));
  };
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SQL_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const identifier = string(
  (s) => (IDENTIFIER.test(s) && !s.startsWith("__") ? undefined : "must be an identifier"),
  'letters, digits and "_", not starting with a digit or "__"',
);
const sqlIdentifier = string(
  (s) => (SQL_IDENTIFIER.test(s) ? undefined : "must be a plain SQL identifier"),
  'letters, digits and "_", not starting with a digit, at most 63 characters',
);
const headerName = string((s) => (HEADER_NAME.test(s) ? undefined : "must be a valid HTTP header name"));
const statusCode = integer(100, 599);

function httpUrl(what = "URL"): Reader<string> {
  return (value: unknown, path: Path, ctx: Ctx) => {
    const { text, written } = readText(value, path, ctx);
    checkHttpUrl(text, written, path, ctx, what);
    return text;
  };
}

/** `{{ }}` placeholders are replaced by a neutral word before parsing, so they may sit anywhere but the scheme. */
function checkHttpUrl(text: string, written: string, path: Path, ctx: Ctx, what: string): void {
  const probe = text.trim().replace(/\{\{[\s\S]*?\}\}/g, "x");
  let url: URL | undefined;
  try {
    url = new URL(probe);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    ctx.fail(path, `must be an http:// or https:// ${what} (got ${quoteWritten(text, written)})`);
  }
  if (url.password !== "") ctx.secret(decodeURIComponentSafe(url.password));
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

// ---------------------------------------------------------------------------------------------
// Tables.

const RETRY = {
  max_attempts: dflt(integer(1), 3),
  backoff: dflt(oneOf(["exponential", "linear", "fixed"] as const), "exponential"),
  initial_delay: dflt(duration, 100),
  max_delay: dflt(duration, 5000),
  multiplier: dflt(number(1), 2.5),
  jitter: dflt(number(0, 1), 0),
  retry_on: dflt(list(statusCode), [408, 429, 500, 502, 503, 504]),
  dont_retry_on: dflt(list(statusCode), [400, 401, 403, 404, 422]),
};
const readRetry = table(RETRY);
const readRetryOverride = table(partial(RETRY));

/** Rules across the keys of a retry policy, checked after overrides are merged. */
function checkRetry(policy: RetryPolicy, path: Path, ctx: Ctx, inherited: string): void {
  if (policy.initialDelay > policy.maxDelay) {
    ctx.fail(
      [...path, "initial_delay"],
      `initial_delay (${formatDuration(policy.initialDelay)}) is longer than max_delay (${formatDuration(policy.maxDelay)})${inherited}`,
      "every delay is capped at max_delay: raise max_delay or lower initial_delay",
    );
  }
  const both = policy.retryOn.filter((s) => policy.dontRetryOn.includes(s));
  if (both.length > 0) {
    ctx.fail(
      [...path, "retry_on"],
      `status ${both.join(", ")} is in both retry_on and dont_retry_on${inherited}`,
    );
  }
}

const readDatabase = table({
  url: opt(
    string((s) =>
      s === "" || /^postgres(ql)?:\/\//.test(s)
        ? undefined
        : 'must be a "postgres://" or "postgresql://" URL',
    ),
  ),
  data_dir: dflt(nonEmpty, ".fraiseql/data"),
  schema: dflt(sqlIdentifier, "fraiseql"),
  retention: dflt(duration, 7 * 24 * 3600 * 1000),
});

const readAuth = table({
  mode: dflt(oneOf(["none", "bearer", "jwt"] as const), "none"),
  tokens: dflt(list(nonEmpty), [] as string[]),
  secret: opt(nonEmpty),
  public_key: opt(nonEmpty),
  issuer: opt(nonEmpty),
  audience: opt(nonEmpty),
});

const readServerTable = table({
  host: dflt(nonEmpty, "127.0.0.1"),
  port: dflt(integer(0, 65535), 4000),
  auth: sub(readAuth),
  max_body_size: dflt(size, 1024 * 1024),
  max_depth: dflt(integer(1), 10),
  max_complexity: dflt(integer(1), 50_000),
  introspection: opt(boolean),
});

const readDispatch = table({
  async: dflt(boolean, true),
  timeout: dflt(duration, 30_000),
  background_retry: dflt(boolean, true),
  max_queue_size: dflt(integer(1), 1000),
  poll_interval: dflt(duration, 200),
  lease: dflt(duration, 5000),
  concurrency: dflt(integer(1), 256),
  liveness_lock: dflt(boolean, true),
});

const readBatching = table({
  enabled: dflt(boolean, false),
  batch_size: dflt(integer(1), 50),
  timeout: dflt(duration, 10_000),
});

const readRateLimiting = table({
  enabled: dflt(boolean, false),
  max_per_second: dflt(number(0, Number.POSITIVE_INFINITY, true), 100),
  burst: dflt(integer(1), 200),
});

const readSigningTable = table({
  enabled: opt(boolean),
  scheme: dflt(oneOf(["fraiseql", "standard"] as const), "fraiseql"),
  algorithm: dflt(oneOf(["sha256"] as const), "sha256"),
  secret: opt(string()),
  secrets: opt(list(string(), 1)),
  header: dflt(headerName, "X-FraiseQL-Signature"),
  timestamp_header: dflt(headerName, "X-FraiseQL-Timestamp"),
});

const readDlq = table({
  enabled: dflt(boolean, true),
  backend: dflt(oneOf(["postgresql", "nats", "file"] as const), "postgresql"),
  table: dflt(sqlIdentifier, "webhook_dlq"),
  schema: dflt(sqlIdentifier, "public"),
  retention: dflt(duration, 7 * 24 * 60 * 60 * 1000),
  max_size: dflt(size, 10_000_000_000),
  url: dflt(
    string((s) => (/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(s) ? undefined : 'must be a "nats://" URL')),
    "nats://127.0.0.1:4222",
  ),
  stream: dflt(
    string((s) =>
      /^[^\s.*>/\\]+$/.test(s)
        ? undefined
        : 'must be a NATS stream name (no spaces, ".", "*", ">" or slashes)',
    ),
    "WEBHOOK_DLQ",
  ),
  bucket: dflt(
    string((s) =>
      /^[A-Za-z0-9_-]+$/.test(s) ? undefined : 'must be a NATS bucket name (letters, digits, "_", "-")',
    ),
    "webhook-failures",
  ),
  path: dflt(nonEmpty, ".fraiseql/webhook_dlq.jsonl"),
  rotation: dflt(oneOf(["daily", "none"] as const), "daily"),
  compress: dflt(boolean, false),
});

const TOP_KEYS = ["database", "server", "entities", "observers", "webhooks", "observability", "include"];

// ---------------------------------------------------------------------------------------------
// The whole config.

/**
 * Validates a TOML-shaped config (plus entities and observers from TypeScript modules) and
 * returns the deep-frozen {@link ResolvedConfig}.
 * @throws FraiseqlError FQL_CONFIG_INVALID, FQL_ENV_MISSING, or a condition/template error
 *   located at its config key.
 */
export function resolveConfig(raw: unknown, options: ResolveOptions = {}): ResolvedConfig {
  const file = options.file === undefined ? undefined : resolve(options.file);
  const { ctx, env, baseDir } = rootContext(options);

  const top = ctx.record(unwrapConfig(raw), [], TOP_KEYS);
  readIncludeList(top.include, ctx, baseDir);

  const db = readDatabase(top.database, ["database"], ctx);
  if (db.url !== undefined) secretOfUrl(db.url, ctx);
  const database = {
    url: db.url === "" ? undefined : db.url,
    dataDir: db.dataDir,
    schema: db.schema,
    retention: db.retention,
  };
  const { server, graphql } = readServer(top.server, ["server"], ctx, options.insecure === true);
  const webhooks = readWebhooks(top.webhooks, ["webhooks"], ctx);
  checkRetry(webhooks.retry, ["webhooks", "retry"], ctx, "");
  secretOfUrl(webhooks.dlq.url, ctx);
  const observability = readObservability(top.observability, ["observability"], ctx);

  const entities = readEntities(top.entities, options.extra?.entities ?? [], ctx);
  const observers = readObservers(top.observers, options.extra?.observers ?? [], entities, webhooks, ctx);

  const secrets = [...env.secrets].sort((a, b) => b.length - a.length);
  const config: ResolvedConfig = {
    file,
    database,
    server,
    graphql,
    entities,
    observers,
    webhooks,
    observability,
    secrets,
  };
  return deepFreeze(config);
}

/**
 * The absolute paths of the modules named by `include` (relative to the config file's
 * directory), checked as `resolveConfig` checks them.
 */
export function resolveIncludes(raw: unknown, options: ResolveOptions = {}): string[] {
  const { ctx, baseDir } = rootContext(options);
  const top = ctx.record(unwrapConfig(raw), [], TOP_KEYS);
  return readIncludeList(top.include, ctx, baseDir);
}

function rootContext(options: ResolveOptions): { ctx: Ctx; env: EnvContext; baseDir: string } {
  const baseDir =
    options.baseDir ?? (options.file === undefined ? process.cwd() : dirname(resolve(options.file)));
  const env: EnvContext = { env: options.env ?? process.env, baseDir, secrets: new Set() };
  const ctx = new Ctx({ file: options.displayFile ?? options.file, source: options.source }, env);
  return { ctx, env, baseDir };
}

function readIncludeList(value: unknown, ctx: Ctx, baseDir: string): string[] {
  if (value === undefined) return [];
  return list(nonEmpty)(value, ["include"], ctx).map((p) => resolve(baseDir, p));
}

function unwrapConfig(raw: unknown): unknown {
  return raw === undefined || raw === null ? {} : raw;
}

function secretOfUrl(text: string, ctx: Ctx): void {
  try {
    const url = new URL(text);
    if (url.password !== "") ctx.secret(decodeURIComponentSafe(url.password));
  } catch {
    // Not a URL: nothing to redact beyond what ${ENV} recorded.
  }
}

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|\[::1\]|localhost)$/i;

function readServer(
  value: unknown,
  serverPath: Path,
  ctx: Ctx,
  insecure: boolean,
): { server: ResolvedConfig["server"]; graphql: ResolvedConfig["graphql"] } {
  const { maxBodySize, maxDepth, maxComplexity, introspection, ...server } = readServerTable(
    value,
    serverPath,
    ctx,
  );
  const auth = server.auth;
  const path: Path = [...serverPath, "auth"];
  for (const token of auth.tokens) ctx.secret(token);
  ctx.secret(auth.secret);
  if (auth.mode === "bearer" && auth.tokens.length === 0) {
    ctx.fail([...path, "tokens"], 'mode "bearer" needs at least one token', 'set tokens = ["${API_TOKEN}"]');
  }
  if (auth.mode === "jwt" && auth.secret === undefined && auth.publicKey === undefined) {
    ctx.fail(
      [...path, "mode"],
      'mode "jwt" needs a secret or a public_key',
      'set secret = "${JWT_SECRET}" or public_key',
    );
  }
  const loopback = LOOPBACK.test(server.host);
  if (auth.mode === "none" && !loopback && !insecure) {
    ctx.fail(
      [...serverPath, "host"],
      `host ${JSON.stringify(server.host)} is not a loopback address, and [server.auth] mode is "none"`,
      'without authentication the server only listens on loopback: set [server.auth] mode = "bearer" with tokens = ["${API_TOKEN}"] (or mode = "jwt" with a secret or public_key), or host = "127.0.0.1"; behind an authenticating proxy, run fraiseql serve --insecure',
    );
  }
  return {
    server,
    graphql: { maxBodySize, maxDepth, maxComplexity, introspection: introspection ?? loopback },
  };
}

function readSigning(value: unknown, path: Path, ctx: Ctx): SigningConfig {
  const t = readSigningTable(value, path, ctx);
  if (t.secret !== undefined && t.secrets !== undefined) {
    ctx.fail([...path, "secrets"], "set secret or secrets, not both", "secrets = [new, old] is for rotation");
  }
  const secrets = t.secret !== undefined ? [t.secret] : (t.secrets ?? []);
  const keyOf = (i: number): Path => (t.secret !== undefined ? [...path, "secret"] : [...path, "secrets", i]);
  secrets.forEach((s, i) => {
    if (s === "" && t.enabled !== false) ctx.fail(keyOf(i), "the signing secret is empty");
    ctx.secret(s);
    // The signer's own decoding, so a secret accepted here is one it can sign with.
    if (t.scheme === "standard") ctx.at(keyOf(i), () => standardWebhookKey(s));
  });
  const enabled = t.enabled ?? secrets.length > 0;
  if (enabled && secrets.length === 0) {
    ctx.fail(
      t.enabled === undefined ? path : [...path, "enabled"],
      "signing is enabled but no secret is set",
      'set secret = "${WEBHOOK_SECRET}", or enabled = false',
    );
  }
  return {
    enabled,
    scheme: t.scheme,
    algorithm: t.algorithm,
    secrets,
    header: t.header,
    timestampHeader: t.timestampHeader,
  };
}

/** A `[webhooks] allowed_hosts` entry: host name, `*.` wildcard, IP address or CIDR range. */
const allowedHost = string(
  allowedHostProblem,
  'e.g. "hooks.internal", "*.internal.example", "10.1.2.3", "10.0.0.0/8", "::1", "fd00::/8"',
);

/** A PEM file named by path (relative to the config file); its text is the value. */
const pemFile: Reader<string> = (value: unknown, path: Path, ctx: Ctx) => {
  const { text } = readText(value, path, ctx);
  const file = resolve(ctx.env.baseDir ?? process.cwd(), text);
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unreadable";
    ctx.fail(
      path,
      `cannot read the CA file ${file} (${code})`,
      "give the path of a PEM file, relative to the config file",
    );
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    ctx.fail(
      path,
      `${file} holds no PEM certificate`,
      'a PEM file starts with "-----BEGIN CERTIFICATE-----"',
    );
  }
  return pem;
};

const readWebhooks = table({
  timeout: dflt(duration, 30_000),
  test_url: opt(httpUrl()),
  allowed_hosts: dflt(list(allowedHost), [] as string[]),
  block_private_networks: dflt(boolean, false),
  ca: opt(pemFile),
  max_payload_size: dflt(size, 1_000_000),
  retry: sub(readRetry),
  dispatch: sub(readDispatch),
  batching: sub(readBatching),
  rate_limiting: sub(readRateLimiting),
  signing: sub(readSigning),
  dlq: sub(readDlq),
});

const readObservability = table({
  prometheus: sub(
    table({
      enabled: dflt(boolean, false),
      port: dflt(integer(0, 65535), 9090),
      host: dflt(nonEmpty, "127.0.0.1"),
      namespace: dflt(
        string((s) =>
          /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? undefined : "must be a Prometheus metric name prefix",
        ),
        "fraiseql",
      ),
    }),
  ),
});

// ---------------------------------------------------------------------------------------------
// Entities.

const ENTITY_KEYS = ["name", "table", "schema", "fields"];

/** Where one item (entity or observer) comes from and how its key path starts. */
interface Item {
  readonly value: unknown;
  readonly path: Path;
  readonly ctx: Ctx;
  /** "line 12" or the module file, for duplicate messages. */
  readonly place: string;
}

function items(
  kind: "entities" | "observers",
  tomlValue: unknown,
  extra: readonly unknown[],
  ctx: Ctx,
): Item[] {
  const out: Item[] = [];
  if (tomlValue !== undefined) {
    if (!Array.isArray(tomlValue)) {
      ctx.fail(
        [kind],
        `must be an array of tables, got ${typeName(tomlValue)}`,
        `write [[${kind}]] (two brackets) for each one`,
      );
    }
    tomlValue.forEach((value, i) => {
      const path: Path = [kind, i];
      const line = ctx.where(path).line;
      out.push({ value, path, ctx, place: line === undefined ? `${kind}[${i}]` : `line ${line}` });
    });
  }
  extra.forEach((value, i) => {
    const name =
      isPlainObject(value) && typeof value.name === "string" && value.name !== "" ? value.name : String(i);
    const file = sourceOf(value);
    const itemCtx = ctx.from({ file, source: undefined });
    out.push({ value, path: [kind, { name }], ctx: itemCtx, place: file ?? "TypeScript" });
  });
  return out;
}

function readEntities(tomlValue: unknown, extra: readonly unknown[], ctx: Ctx): EntityModel[] {
  const entities: EntityModel[] = [];
  const byName = new Map<string, string>();
  const byTable = new Map<string, string>();
  for (const item of items("entities", tomlValue, extra, ctx)) {
    const entity = readEntity(item);
    const seen = byName.get(entity.name);
    if (seen !== undefined)
      item.ctx.fail([...item.path, "name"], `entity ${entity.name} is declared twice (also at ${seen})`);
    byName.set(entity.name, item.place);
    const qualified = `${entity.schema}.${entity.table}`;
    const sameTable = byTable.get(qualified);
    if (sameTable !== undefined) {
      item.ctx.fail([...item.path, "table"], `table ${qualified} already belongs to entity ${sameTable}`);
    }
    byTable.set(qualified, entity.name);
    entities.push(entity);
  }
  return entities;
}

function readEntity(item: Item): EntityModel {
  const { value, path } = item;
  const ctx: Ctx = item.ctx;
  if (isDefinition(value) && !isDefinition(value, "entity")) {
    ctx.fail(path, `expected defineEntity(...), got ${value.kind}(...)`);
  }
  const record = ctx.record(value, path, ENTITY_KEYS);
  if (record.name === undefined) ctx.fail([...path, "name"], '"name" is required');
  const name = identifier(record.name, [...path, "name"], ctx);
  const tableName =
    record.table === undefined
      ? defaultTableName(name)
      : sqlIdentifier(record.table, [...path, "table"], ctx);
  const schema =
    record.schema === undefined ? "public" : sqlIdentifier(record.schema, [...path, "schema"], ctx);
  const fieldsPath: Path = [...path, "fields"];
  const fieldsValue = record.fields ?? {};
  if (!isPlainObject(fieldsValue))
    ctx.fail(fieldsPath, `must be a table of field = "Type", got ${typeName(fieldsValue)}`);
  const fields: FieldModel[] = [{ name: "id", type: "ID", nullable: false }];
  for (const [fieldName, typeValue] of Object.entries(fieldsValue)) {
    const fieldPath: Path = [...fieldsPath, fieldName];
    if (!IDENTIFIER.test(fieldName) || fieldName.startsWith("__") || fieldName.length > 63) {
      ctx.fail(
        fieldPath,
        `field name ${JSON.stringify(fieldName)} is not an identifier`,
        'letters, digits and "_", at most 63 characters',
      );
    }
    const { type, nullable } = readFieldType(typeValue, fieldPath, ctx);
    if (fieldName === "id") {
      if (type !== "ID" || nullable)
        ctx.fail(fieldPath, `id is the entity's key and must be "ID", got "${type}${nullable ? "?" : ""}"`);
      continue;
    }
    if (type === "ID") {
      ctx.fail(
        fieldPath,
        `only the field "id" can be an ID`,
        'declare references to other entities with the type of their id, e.g. "String"',
      );
    }
    fields.push({ name: fieldName, type, nullable });
  }
  return { name, table: tableName, schema, fields };
}

function readFieldType(value: unknown, path: Path, ctx: Ctx): { type: Scalar; nullable: boolean } {
  const { text } = readText(value, path, ctx);
  const nullable = text.endsWith("?");
  const base = nullable ? text.slice(0, -1) : text;
  const type = SCALARS.find((s) => s === base);
  if (type === undefined) {
    const guess = SCALARS.find((s) => s.toLowerCase() === base.toLowerCase()) ?? suggest(base, SCALARS);
    ctx.fail(
      path,
      `unknown field type ${JSON.stringify(text)}`,
      `${guess === undefined ? "" : `did you mean "${guess}${nullable ? "?" : ""}"? `}types: ${SCALARS.join(", ")}, with "?" for nullable`,
    );
  }
  if (type === "ID" && nullable) ctx.fail(path, "an ID is never nullable");
  return { type, nullable };
}

/** snake_case plural of a type name: `Order` -> `orders`, `OrderItem` -> `order_items`, `Category` -> `categories`. */
export function defaultTableName(name: string): string {
  const snake = name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase();
  if (/[^aeiou]y$/.test(snake)) return `${snake.slice(0, -1)}ies`;
  if (/(s|x|z|ch|sh)$/.test(snake)) return `${snake}es`;
  return `${snake}s`;
}

// ---------------------------------------------------------------------------------------------
// Observers and actions.

const OBSERVER_KEYS = ["name", "entity", "event", "condition", "execution", "ordering", "retry", "actions"];
const ACTION_KEYS = [
  "type",
  "url",
  "method",
  "headers",
  "condition",
  "body",
  "batch",
  "encryption",
  "timeout",
];
const METHODS = ["POST", "GET", "PUT", "PATCH", "DELETE"] as const;
const ENVELOPE_KEYS = ["id", "observer", "entity", "event", "timestamp", "data", "changed"];

const readEvent = oneOf<EventKind>(["INSERT", "UPDATE", "DELETE"], true);
const readExecution = oneOf(["sequential", "parallel"] as const);
const readOrdering = oneOf(["none", "per_key"] as const);
const readMethod = oneOf(METHODS, true);

interface WebhookDefaults {
  readonly timeout: number;
  readonly retry: RetryPolicy;
  readonly batching: { readonly enabled: boolean; readonly batchSize: number; readonly timeout: number };
}

function readObservers(
  tomlValue: unknown,
  extra: readonly unknown[],
  entities: readonly EntityModel[],
  defaults: WebhookDefaults,
  ctx: Ctx,
): ObserverModel[] {
  const observers: ObserverModel[] = [];
  const byName = new Map<string, string>();
  for (const item of items("observers", tomlValue, extra, ctx)) {
    const observer = readObserver(item, entities, defaults);
    const seen = byName.get(observer.name);
    if (seen !== undefined) {
      item.ctx.fail(
        [...item.path, "name"],
        `observer ${observer.name} is declared twice (also at ${seen})`,
        "observer names are unique",
      );
    }
    byName.set(observer.name, item.place);
    observers.push(observer);
  }
  return observers;
}

function readObserver(
  item: Item,
  entities: readonly EntityModel[],
  defaults: WebhookDefaults,
): ObserverModel {
  const { value, path } = item;
  const ctx: Ctx = item.ctx;
  if (isDefinition(value) && !isDefinition(value, "observer"))
    ctx.fail(path, `expected observer(...), got ${value.kind}(...)`);
  const record = ctx.record(value, path, OBSERVER_KEYS);
  const required = (key: string): unknown => record[key] ?? ctx.fail([...path, key], `"${key}" is required`);

  const name = identifier(required("name"), [...path, "name"], ctx);
  const entityValue = required("entity");
  const entityName = isDefinition(entityValue, "entity") ? entityValue.name : entityValue;
  const entityText = nonEmpty(entityName, [...path, "entity"], ctx);
  const entity = entities.find((e) => e.name === entityText);
  if (entity === undefined) {
    const names = entities.map((e) => e.name);
    const guess = suggest(entityText, names);
    ctx.fail(
      [...path, "entity"],
      `unknown entity ${JSON.stringify(entityText)}`,
      names.length === 0
        ? "no entities are declared: add [[entities]] or defineEntity(...)"
        : `${guess === undefined ? "" : `did you mean "${guess}"? `}entities: ${names.join(", ")}`,
    );
  }
  const fields = entity.fields;
  const event = readEvent(required("event"), [...path, "event"], ctx);
  const condition = readCondition(record.condition, [...path, "condition"], fields, ctx);
  const execution =
    record.execution === undefined
      ? "sequential"
      : readExecution(record.execution, [...path, "execution"], ctx);
  const ordering =
    record.ordering === undefined ? "none" : readOrdering(record.ordering, [...path, "ordering"], ctx);

  let retry = defaults.retry;
  if (record.retry !== undefined) {
    const override = readRetryOverride(record.retry, [...path, "retry"], ctx);
    const merged: Record<string, unknown> = { ...defaults.retry };
    for (const [key, v] of Object.entries(override)) if (v !== undefined) merged[key] = v;
    retry = merged as unknown as RetryPolicy;
    checkRetry(retry, [...path, "retry"], ctx, " once merged with [webhooks.retry]");
  }

  const actionsPath: Path = [...path, "actions"];
  const actionsValue = record.actions;
  if (actionsValue === undefined || (Array.isArray(actionsValue) && actionsValue.length === 0)) {
    ctx.fail(
      actionsPath,
      `observer ${name} has no actions`,
      "add at least one [[observers.actions]] with a url",
    );
  }
  if (!Array.isArray(actionsValue)) {
    ctx.fail(
      actionsPath,
      `must be an array of actions, got ${typeName(actionsValue)}`,
      "write [[observers.actions]] for each one",
    );
  }
  const actions = actionsValue.map((a, i) => readAction(a, i, [...actionsPath, i], fields, defaults, ctx));
  return { name, entity: entity.name, event, condition, execution, ordering, retry, actions };
}

function readCondition(
  value: unknown,
  path: Path,
  fields: readonly FieldModel[],
  ctx: Ctx,
): string | undefined {
  if (value === undefined) return undefined;
  const source = nonEmpty(value, path, ctx);
  ctx.at(path, () => compileCondition(source, { fields }));
  return source;
}

function readAction(
  value: unknown,
  index: number,
  path: Path,
  fields: readonly FieldModel[],
  defaults: WebhookDefaults,
  ctx: Ctx,
): WebhookAction {
  if (isDefinition(value) && !isDefinition(value, "webhook"))
    ctx.fail(path, `expected webhook(...), got ${value.kind}(...)`);
  const record = ctx.record(value, path, ACTION_KEYS, "table (an action)");
  if (record.type !== undefined) oneOf(["webhook"] as const)(record.type, [...path, "type"], ctx);

  if (record.url === undefined) ctx.fail([...path, "url"], '"url" is required');
  const url = httpUrl()(record.url, [...path, "url"], ctx);
  ctx.at([...path, "url"], () => compileStringTemplate(url, { fields, encode: "uri-component" }));

  const method = record.method === undefined ? "POST" : readMethod(record.method, [...path, "method"], ctx);
  const headers = readHeaders(record.headers, [...path, "headers"], fields, ctx);
  const condition = readCondition(record.condition, [...path, "condition"], fields, ctx);

  let body: unknown;
  if (record.body !== undefined) {
    body = readJson(record.body, [...path, "body"], ctx);
    // `_count` is the size of a batch: a name only a batched action's body has.
    const batched = record.batch !== undefined || defaults.batching.enabled;
    ctx.at([...path, "body"], () =>
      compileBodyTemplate(body, { fields, extraNames: batched ? ["_count"] : [] }),
    );
  }

  const batch: BatchPolicy | undefined =
    record.batch === undefined
      ? undefined
      : table({
          size: dflt(integer(1), defaults.batching.batchSize),
          timeout: dflt(duration, defaults.batching.timeout),
        })(record.batch, [...path, "batch"], ctx);

  const encryption = readEncryption(record.encryption, [...path, "encryption"], body, ctx);
  const timeout =
    record.timeout === undefined ? defaults.timeout : duration(record.timeout, [...path, "timeout"], ctx);
  return { type: "webhook", index, url, method, headers, condition, body, batch, encryption, timeout };
}

function readHeaders(
  value: unknown,
  path: Path,
  fields: readonly FieldModel[],
  ctx: Ctx,
): Record<string, string> {
  if (value === undefined) return {};
  if (!isPlainObject(value)) ctx.fail(path, `must be a table of header = "value", got ${typeName(value)}`);
  const out: Record<string, string> = {};
  const seen = new Map<string, string>();
  for (const [name, raw] of Object.entries(value)) {
    const headerPath: Path = [...path, name];
    if (!HEADER_NAME.test(name))
      ctx.fail(headerPath, `${JSON.stringify(name)} is not a valid HTTP header name`);
    const lower = name.toLowerCase();
    const twin = seen.get(lower);
    if (twin !== undefined)
      ctx.fail(headerPath, `header ${name} is set twice (also as ${twin}); header names ignore case`);
    seen.set(lower, name);
    const { text } = readText(raw, headerPath, ctx);
    if (/[\r\n]/.test(text)) ctx.fail(headerPath, "a header value cannot contain a line break");
    ctx.at(headerPath, () => compileStringTemplate(text, { fields, encode: "none" }));
    out[name] = text;
  }
  return out;
}

/** A body: any JSON value; strings get `${ENV}` substituted, TOML dates become ISO text. */
function readJson(value: unknown, path: Path, ctx: Ctx): unknown {
  if (typeof value === "string") return ctx.expand(value, path);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) ctx.fail(path, `${value} cannot be sent as JSON`);
    return value;
  }
  if (typeof value === "boolean" || value === null) return value;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((v, i) => readJson(v, [...path, i], ctx));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value))
      if (v !== undefined) out[key] = readJson(v, [...path, key], ctx);
    return out;
  }
  ctx.fail(path, `${typeName(value)} cannot be sent as JSON`);
}

const readEncryptionTable = table({
  enabled: dflt(boolean, true),
  algorithm: dflt(oneOf(["AES-256-GCM"] as const, true), "AES-256-GCM"),
  key: opt(string()),
  fields: opt(list(nonEmpty, 1)),
});

function readEncryption(value: unknown, path: Path, body: unknown, ctx: Ctx): EncryptionPolicy | undefined {
  if (value === undefined) return undefined;
  const t = readEncryptionTable(value, path, ctx);
  ctx.secret(t.key);
  if (!t.enabled) return undefined;
  if (t.key === undefined) {
    ctx.fail(
      [...path, "key"],
      "encryption is enabled but no key is set",
      'set key = "${WEBHOOK_ENCRYPTION_KEY}"',
    );
  }
  // parseEncryptionKey's message describes the key's shape only: the key itself is never printed.
  const key = ctx.at([...path, "key"], () => parseEncryptionKey(t.key!));
  if (t.fields !== undefined) {
    const shape = body === undefined ? Object.fromEntries(ENVELOPE_KEYS.map((k) => [k, undefined])) : body;
    t.fields.forEach((field, i) => {
      const missing = missingField(shape, field);
      if (missing === undefined) return;
      const guess = suggest(missing.name, missing.keys);
      ctx.fail(
        [...path, "fields", i],
        `${JSON.stringify(field)} is not in the ${body === undefined ? "event envelope" : "body"}`,
        `${guess === undefined ? "" : `did you mean "${guess}"? `}keys there: ${missing.keys.join(", ")}`,
      );
    });
  }
  return { enabled: true, algorithm: t.algorithm, key, fields: t.fields };
}

/**
 * Checks an encryption field against the body template as the encryption step reads it: a
 * top-level key, else a dotted path into nested tables. Where the template holds a placeholder
 * (or an array, a batch) the shape is only known at send time, so the field is accepted.
 */
function missingField(body: unknown, field: string): { name: string; keys: string[] } | undefined {
  if (!isPlainObject(body) || field in body) return undefined;
  const [first, ...rest] = field.split(".");
  if (rest.length === 0 || !(first! in body)) return { name: field, keys: Object.keys(body) };
  let node: unknown = body[first!];
  for (const segment of rest) {
    if (!isPlainObject(node)) return undefined;
    if (!(segment in node)) return { name: segment, keys: Object.keys(node) };
    node = node[segment];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (typeof value === "string")
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${value}`;
  if (isPlainObject(value)) return "a table";
  return typeof value;
}

/** The closest of `candidates` to `word`, if close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/[_-]/g, "");
  const exact = candidates.find((c) => norm(c) === norm(word));
  if (exact !== undefined) return exact;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3));
  for (const candidate of candidates) {
    const d = editDistance(norm(word), norm(candidate));
    if (d <= bestDistance) {
      if (d < bestDistance || best === undefined) best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** Freezes `value` and everything reachable from it (Buffers stay writable: they cannot be frozen). */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== "object" || value === null || Object.isFrozen(value) || ArrayBuffer.isView(value))
    return value;
  for (const v of Object.values(value)) deepFreeze(v);
  return Object.freeze(value);
}

/**
 * Whether a config string is a `{{ }}` template (an action's url, a header, a body value): a
 * value substituted from the environment there must stay literal text, never become template
 * syntax (a secret holding "{{" would otherwise be parsed, and shown in the parse error).
 */
function isTemplatePath(path: Path): boolean {
  const i = path.indexOf("actions");
  if (i < 0) return false;
  const key = path[i + 2];
  return key === "url" || key === "headers" || key === "body";
}
