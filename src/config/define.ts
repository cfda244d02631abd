/**
 * The TypeScript API for declaring entities, observers and config. It takes the same keys as
 * `fraiseql.toml` (snake_case: `max_attempts`, `initial_delay`, ...) and is validated by the same
 * schema, when the config resolves: these functions only tag and freeze their input, so an error
 * is reported once, with the key path (`observers[on_order_created].actions[0].url`) and the
 * module file.
 *
 * ```ts
 * import { defineEntity, observer, webhook } from "fraiseql";
 * export const Order = defineEntity({ name: "Order", fields: { total: "Float", status: "String" } });
 * export const onOrderCreated = observer({
 *   name: "on_order_created", entity: "Order", event: "INSERT",
 *   actions: [webhook({ url: "https://api.example.com/notifications", body: { total: "{{ total }}" } })],
 * });
 * ```
 *
 * Modules named in `include = [...]` are imported by the loader, which collects every exported
 * value made here (arrays of them too) and a default export made by {@link defineConfig}.
 */

import type { EventKind, Scalar } from "./types.js";

/** A duration with its unit: `"100ms"`, `"5s"`, `"1h30m"`, `"7d"`. Bare numbers are refused. */
export type Duration = string;

/** A size with its unit: `"512MB"`, `"10GB"` (x1000) or `"1GiB"` (x1024). */
export type Size = string;

/** A field type: a scalar, with a trailing `?` when the column is nullable. */
export type FieldType = Scalar | `${Scalar}?`;

/** An entity: a GraphQL type backed by one table. */
export interface EntityInput {
  /** GraphQL type name, an identifier (PascalCase by convention). Required. */
  name: string;
  /** Table name. (Default: snake_case plural of the name: `OrderItem` -> `order_items`) */
  table?: string;
  /** PostgreSQL schema of the table. (Default: "public") */
  schema?: string;
  /**
   * Field name -> type. `id` is always the `ID` field: it is added first when not declared, and no
   * other field may be an `ID`. (Default: only `id`)
   */
  fields?: Readonly<Record<string, FieldType>>;
}

/** Retry policy keys; in an observer each one overrides `[webhooks.retry]`. */
export interface RetryInput {
  /** Total attempts including the first, >= 1. (Default: 3) */
  max_attempts?: number;
  /** (Default: "exponential") */
  backoff?: "exponential" | "linear" | "fixed";
  /** Delay before the first retry. (Default: "100ms") */
  initial_delay?: Duration;
  /** Cap on any delay, Retry-After included. (Default: "5s") */
  max_delay?: Duration;
  /** Growth factor of exponential backoff, >= 1. (Default: 2.5) */
  multiplier?: number;
  /** Spread of each delay as a fraction in [0, 1]. (Default: 0) */
  jitter?: number;
  /** Statuses that are retried. (Default: [408, 429, 500, 502, 503, 504]) */
  retry_on?: readonly number[];
  /** Statuses that go to the DLQ at once. (Default: [400, 401, 403, 404, 422]) */
  dont_retry_on?: readonly number[];
}

/** Batching of one action: up to `size` events per request, or what arrived within `timeout`. */
export interface BatchInput {
  /** Events per request, >= 1. (Default: `[webhooks.batching] batch_size`, 50) */
  size?: number;
  /** Longest wait for a batch to fill. (Default: `[webhooks.batching] timeout`, "10s") */
  timeout?: Duration;
}

/** Payload encryption of one action (AES-256-GCM). */
export interface EncryptionInput {
  /** (Default: true) */
  enabled?: boolean;
  /** (Default: "AES-256-GCM", the only one) */
  algorithm?: "AES-256-GCM";
  /** 32-byte key as 64 hex digits or base64; required when enabled. Usually `"${WEBHOOK_ENCRYPTION_KEY}"`. */
  key?: string;
  /** Top-level body fields to encrypt. (Default: the whole body) */
  fields?: readonly string[];
}

/** One webhook action of an observer. */
export interface WebhookInput {
  /** (Default: "webhook", the only action type) */
  type?: "webhook";
  /** http(s) URL; `{{ expr }}` placeholders are allowed and URI-encoded. Required. */
  url: string;
  /** (Default: "POST") */
  method?: "POST" | "GET" | "PUT" | "PATCH" | "DELETE";
  /** Header name -> value template. (Default: none) */
  headers?: Readonly<Record<string, string>>;
  /** Routes events to this action only when true. (Default: always) */
  condition?: string;
  /** JSON body template. (Default: the event envelope) */
  body?: unknown;
  /** (Default: no batching) */
  batch?: BatchInput;
  /** (Default: no encryption) */
  encryption?: EncryptionInput;
  /** Per-request timeout. (Default: `[webhooks] timeout`, "30s") */
  timeout?: Duration;
}

/** An observer: entity + event + optional condition -> ordered actions. */
export interface ObserverInput {
  /** Unique identifier, used in metrics, the DLQ and the command line. Required. */
  name: string;
  /** Entity name, or the value returned by {@link defineEntity}. Required. */
  entity: string | EntityDef;
  /** Required; lowercase is accepted. */
  event: EventKind | Lowercase<EventKind>;
  /** (Default: every event) */
  condition?: string;
  /** (Default: "sequential") */
  execution?: "sequential" | "parallel";
  /** `per_key`: deliveries for one row are sent one at a time, in commit order. (Default: "none") */
  ordering?: "none" | "per_key";
  /** Overrides of `[webhooks.retry]`. (Default: none) */
  retry?: RetryInput;
  /** At least one. */
  actions: readonly (WebhookInput | WebhookDef)[];
}

/** `[database]` */
export interface DatabaseInput {
  /** `postgres://` URL of a real PostgreSQL; empty or absent: embedded PGlite. (Default: none) */
  url?: string;
  /** PGlite data directory, relative to the working directory. (Default: ".fraiseql/data") */
  data_dir?: string;
  /** Schema of the internal tables. (Default: "fraiseql") */
  schema?: string;
  /** How long processed events, finished deliveries and their history are kept. (Default: "7d") */
  retention?: Duration;
}

/** `[server]` */
export interface ServerInput {
  /** (Default: "127.0.0.1") */
  host?: string;
  /** (Default: 4000) */
  port?: number;
  auth?: {
    /** none is only allowed on a loopback host. (Default: "none") */
    mode?: "none" | "bearer" | "jwt";
    /** bearer: accepted tokens. (Default: []) */
    tokens?: readonly string[];
    /** jwt: HMAC secret. */
    secret?: string;
    /** jwt: PEM public key. */
    public_key?: string;
    /** jwt: required `iss`. */
    issuer?: string;
    /** jwt: required `aud`. */
    audience?: string;
  };
  /** Largest GraphQL request body; larger ones get 413. (Default: "1MiB") */
  max_body_size?: Size;
  /** Deepest field nesting of a GraphQL operation, introspection excluded. (Default: 10) */
  max_depth?: number;
  /** Largest operation complexity: fields, multiplied by the page size of the lists above them. (Default: 50000) */
  max_complexity?: number;
  /** Whether `__schema`/`__type` may be queried. (Default: true on a loopback host, else false) */
  introspection?: boolean;
}

/** `[webhooks]` */
export interface WebhooksInput {
  /** Per-request timeout. (Default: "30s") */
  timeout?: Duration;
  /** http(s) URL for local testing (e.g. a tunnel). (Default: none) */
  test_url?: string;
  /**
   * Host names (`*.` wildcards allowed), IP addresses and CIDR ranges that webhooks may reach
   * even when private, e.g. a templated host on an internal network. (Default: [])
   */
  allowed_hosts?: readonly string[];
  /** Check the address of every request, hosts written in the config included. (Default: false) */
  block_private_networks?: boolean;
  /** PEM file of CA certificates trusted for HTTPS besides the bundled roots, relative to the config file. (Default: none) */
  ca?: string;
  /** Largest request body sent; larger ones are dead-lettered unsent as invalid_request. (Default: "1MB") */
  max_payload_size?: Size;
  retry?: RetryInput;
  dispatch?: {
    /** (Default: true) */
    async?: boolean;
    /** (Default: "30s") */
    timeout?: Duration;
    /** (Default: true) */
    background_retry?: boolean;
    /** (Default: 1000) */
    max_queue_size?: number;
    /** (Default: "200ms") */
    poll_interval?: Duration;
    /** (Default: "5s") */
    lease?: Duration;
    /** (Default: 256) */
    concurrency?: number;
    /** (Default: true) */
    liveness_lock?: boolean;
  };
  batching?: {
    /** (Default: false) */
    enabled?: boolean;
    /** (Default: 50) */
    batch_size?: number;
    /** (Default: "10s") */
    timeout?: Duration;
  };
  rate_limiting?: {
    /** (Default: false) */
    enabled?: boolean;
    /** (Default: 100) */
    max_per_second?: number;
    /** (Default: 200) */
    burst?: number;
  };
  signing?: {
    /** (Default: true when a secret is set) */
    enabled?: boolean;
    /** (Default: "fraiseql") */
    scheme?: "fraiseql" | "standard";
    /** (Default: "sha256") */
    algorithm?: "sha256";
    /** One secret. */
    secret?: string;
    /** Several secrets (rotation): the first signs. */
    secrets?: readonly string[];
    /** (Default: "X-FraiseQL-Signature") */
    header?: string;
    /** (Default: "X-FraiseQL-Timestamp") */
    timestamp_header?: string;
  };
  dlq?: {
    /** (Default: true) */
    enabled?: boolean;
    /** (Default: "postgresql") */
    backend?: "postgresql" | "nats" | "file";
    /** (Default: "webhook_dlq") */
    table?: string;
    /** (Default: "public") */
    schema?: string;
    /** (Default: "7d") */
    retention?: Duration;
    /** (Default: "10GB") */
    max_size?: Size;
    /** (Default: "nats://127.0.0.1:4222") */
    url?: string;
    /** (Default: "WEBHOOK_DLQ") */
    stream?: string;
    /** (Default: "webhook-failures") */
    bucket?: string;
    /** (Default: ".fraiseql/webhook_dlq.jsonl") */
    path?: string;
    /** (Default: "daily") */
    rotation?: "daily" | "none";
    /** (Default: false) */
    compress?: boolean;
  };
}

/** `[observability]` */
export interface ObservabilityInput {
  prometheus?: {
    /** (Default: false) */
    enabled?: boolean;
    /** (Default: 9090) */
    port?: number;
    /** (Default: "127.0.0.1") */
    host?: string;
    /** (Default: "fraiseql") */
    namespace?: string;
  };
}

/** The whole config, shaped like `fraiseql.toml`. */
export interface ConfigInput {
  database?: DatabaseInput;
  server?: ServerInput;
  entities?: readonly (EntityInput | EntityDef)[];
  observers?: readonly (ObserverInput | ObserverDef)[];
  webhooks?: WebhooksInput;
  observability?: ObservabilityInput;
  /** Modules declaring entities and observers, relative to the config file. (Default: []) */
  include?: readonly string[];
}

/** What {@link defineEntity} returns. */
export type EntityDef = Readonly<EntityInput> & { readonly kind: "entity" };
/** What {@link webhook} returns. */
export type WebhookDef = Readonly<WebhookInput> & { readonly kind: "webhook" };
/** What {@link observer} returns. */
export type ObserverDef = Readonly<ObserverInput> & { readonly kind: "observer" };
/** What {@link defineConfig} returns. */
export type ConfigDef = Readonly<ConfigInput> & { readonly kind: "config" };

/** Any tagged definition. */
export type Definition = EntityDef | WebhookDef | ObserverDef | ConfigDef;

// Symbol.for, not a local symbol: an included module may load its own copy of this file.
const BRAND = Symbol.for("fraiseql.definition");
const SOURCE = Symbol.for("fraiseql.source");

function tag<K extends Definition["kind"], T extends object>(
  kind: K,
  input: T,
): Readonly<T> & { readonly kind: K } {
  const out = { ...input, kind };
  Object.defineProperty(out, BRAND, { value: true });
  return Object.freeze(out);
}

/** Declares an entity. Validated when the config resolves. */
export function defineEntity(input: EntityInput): EntityDef {
  return tag("entity", input);
}

/** Declares a webhook action for {@link observer}. Validated when the config resolves. */
export function webhook(input: WebhookInput): WebhookDef {
  return tag("webhook", input);
}

/** Declares an observer. Validated when the config resolves. */
export function observer(input: ObserverInput): ObserverDef {
  return tag("observer", input);
}

/**
 * Declares config in TypeScript, with the keys of `fraiseql.toml`. As the default export of an
 * included module, it is merged into the TOML config: `entities` and `observers` are appended,
 * other keys may not be set in both places.
 */
export function defineConfig(input: ConfigInput): ConfigDef {
  return tag("config", input);
}

/** True when `value` was made by one of the define functions (of `kind`, when given). */
export function isDefinition<K extends Definition["kind"]>(
  value: unknown,
  kind?: K,
): value is Extract<Definition, { kind: K }> {
  if (typeof value !== "object" || value === null || (value as Record<symbol, unknown>)[BRAND] !== true)
    return false;
  return kind === undefined || (value as { kind?: unknown }).kind === kind;
}

/** A copy of `def` that remembers the module file it was exported from (named in errors). */
export function withSource<D extends Definition>(def: D, file: string): D {
  const out = { ...def };
  Object.defineProperty(out, BRAND, { value: true });
  Object.defineProperty(out, SOURCE, { value: file });
  return Object.freeze(out);
}

/** The module file a definition was exported from, when the loader recorded it. */
export function sourceOf(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const source = (value as Record<symbol, unknown>)[SOURCE];
  return typeof source === "string" ? source : undefined;
}
