/**
 * The resolved, frozen configuration: what every part of the pipeline reads. It is produced once
 * at startup from `fraiseql.toml` and/or the TypeScript API by `config/schema.ts` (defaults
 * applied, units parsed, `${ENV}` substituted, every expression compiled and checked).
 *
 * Glossary
 * - entity: a named row type backed by one table (`Order` -> `orders`).
 * - event: one captured row change (INSERT, UPDATE or DELETE) in the outbox.
 * - observer: entity + event + optional condition -> ordered list of actions.
 * - action: one webhook; its own optional condition routes events (fan-out).
 * - delivery: one event x one action, the unit that is queued, attempted, retried and dead-lettered.
 * - attempt: one HTTP request of a delivery.
 * - dead letter: a delivery that will not be retried any more, kept in the DLQ for replay.
 *
 * Durations are milliseconds and sizes are bytes once resolved.
 */

export type Scalar = "ID" | "String" | "Int" | "Float" | "Boolean" | "DateTime" | "JSON";
export const SCALARS: readonly Scalar[] = ["ID", "String", "Int", "Float", "Boolean", "DateTime", "JSON"];

export type EventKind = "INSERT" | "UPDATE" | "DELETE";
export const EVENT_KINDS: readonly EventKind[] = ["INSERT", "UPDATE", "DELETE"];

export interface FieldModel {
  readonly name: string;
  readonly type: Scalar;
  /** Declared with a trailing `?`. (Default: false; `ID` is never nullable.) */
  readonly nullable: boolean;
}

export interface EntityModel {
  readonly name: string;
  /** Table name. (Default: snake_case plural of the name: `Order` -> `orders`.) */
  readonly table: string;
  /** PostgreSQL schema of the table. (Default: "public".) */
  readonly schema: string;
  readonly fields: readonly FieldModel[];
}

export type BackoffKind = "exponential" | "linear" | "fixed";

export interface RetryPolicy {
  /** Total attempts including the first. (Default: 3) */
  readonly maxAttempts: number;
  /** (Default: "exponential") */
  readonly backoff: BackoffKind;
  /** Delay before the first retry, ms. (Default: 100) */
  readonly initialDelay: number;
  /** Cap on any delay, ms, Retry-After included. (Default: 5000) */
  readonly maxDelay: number;
  /** Growth factor of exponential backoff. (Default: 2.5) */
  readonly multiplier: number;
  /** Spread of each delay as a fraction, 0..1. (Default: 0) */
  readonly jitter: number;
  /** (Default: [408, 429, 500, 502, 503, 504]) */
  readonly retryOn: readonly number[];
  /** (Default: [400, 401, 403, 404, 422]) */
  readonly dontRetryOn: readonly number[];
}

export interface BatchPolicy {
  readonly size: number;
  /** ms */
  readonly timeout: number;
}

export interface EncryptionPolicy {
  readonly enabled: boolean;
  readonly algorithm: "AES-256-GCM";
  /** The 32-byte key, decoded. */
  readonly key: Buffer;
  /** Body fields to encrypt; undefined: the whole body. */
  readonly fields: readonly string[] | undefined;
}

export interface WebhookAction {
  readonly type: "webhook";
  /** Position in the observer's `actions`, 0-based. */
  readonly index: number;
  /** URL template (may hold `{{ }}`). */
  readonly url: string;
  /** (Default: "POST") */
  readonly method: string;
  /** Header templates, `${ENV}` already substituted. */
  readonly headers: Readonly<Record<string, string>>;
  readonly condition: string | undefined;
  /** Body template as JSON; undefined: the event envelope. */
  readonly body: unknown;
  readonly batch: BatchPolicy | undefined;
  readonly encryption: EncryptionPolicy | undefined;
  /** Per-action timeout, ms. (Default: [webhooks] timeout) */
  readonly timeout: number;
}

export interface ObserverModel {
  readonly name: string;
  readonly entity: string;
  readonly event: EventKind;
  readonly condition: string | undefined;
  /** (Default: "sequential") */
  readonly execution: "sequential" | "parallel";
  /**
   * `per_key`: this observer's deliveries for one row are sent one at a time in commit order
   * (a failing row holds back only its own later events). (Default: "none")
   */
  readonly ordering: "none" | "per_key";
  /** [webhooks.retry] merged with this observer's [observers.retry]. */
  readonly retry: RetryPolicy;
  readonly actions: readonly WebhookAction[];
}

export interface SigningConfig {
  /** (Default: true when a secret is set) */
  readonly enabled: boolean;
  /** (Default: "fraiseql") */
  readonly scheme: "fraiseql" | "standard";
  /** (Default: "sha256") */
  readonly algorithm: "sha256";
  /** Signing secrets; the first signs, all are sent during rotation. */
  readonly secrets: readonly string[];
  /** (Default: "X-FraiseQL-Signature") */
  readonly header: string;
  /** (Default: "X-FraiseQL-Timestamp") */
  readonly timestampHeader: string;
}

export interface DispatchConfig {
  /** (Default: true) */
  readonly async: boolean;
  /** How long a synchronous mutation waits for its webhooks, ms. (Default: 30000) */
  readonly timeout: number;
  /** (Default: true) */
  readonly backgroundRetry: boolean;
  /** Deliveries held in memory at once; the durable queue holds the rest. (Default: 1000) */
  readonly maxQueueSize: number;
  /** Idle poll interval for writes made outside this process, ms. (Default: 200) */
  readonly pollInterval: number;
  /** How long a claimed delivery stays owned without a heartbeat, ms. (Default: 5000) */
  readonly lease: number;
  /** Concurrent HTTP requests per process. (Default: 256) */
  readonly concurrency: number;
  /**
   * Hold a session advisory lock on a connection of its own, so that other processes take this
   * one's work back as soon as it dies. Turn off behind a transaction-pooling proxy, where a
   * session lock outlives the client. (Default: true)
   */
  readonly livenessLock: boolean;
}

export interface DlqConfig {
  /** (Default: true) */
  readonly enabled: boolean;
  /** (Default: "postgresql") */
  readonly backend: "postgresql" | "nats" | "file";
  /** (Default: "webhook_dlq") */
  readonly table: string;
  /** (Default: "public") */
  readonly schema: string;
  /** ms. (Default: 7 days) */
  readonly retention: number;
  /** bytes. (Default: 10 GB) */
  readonly maxSize: number;
  /** nats (Default: "nats://127.0.0.1:4222") */
  readonly url: string;
  /** nats (Default: "WEBHOOK_DLQ") */
  readonly stream: string;
  /** nats (Default: "webhook-failures") */
  readonly bucket: string;
  /** file (Default: ".fraiseql/webhook_dlq.jsonl") */
  readonly path: string;
  /** file (Default: "daily") */
  readonly rotation: "daily" | "none";
  /** file (Default: false) */
  readonly compress: boolean;
}

export interface ResolvedConfig {
  /** Absolute path of the TOML file it came from, if any. */
  readonly file: string | undefined;
  readonly database: {
    /** Real PostgreSQL when set; PGlite otherwise. */
    readonly url: string | undefined;
    /** PGlite data directory. (Default: ".fraiseql/data") */
    readonly dataDir: string;
    /** Schema of the internal tables. (Default: "fraiseql") */
    readonly schema: string;
    /** How long processed events and finished deliveries are kept, ms. (Default: 7 days) */
    readonly retention: number;
  };
  readonly server: {
    /** (Default: "127.0.0.1") */
    readonly host: string;
    /** (Default: 4000) */
    readonly port: number;
    readonly auth: {
      readonly mode: "none" | "bearer" | "jwt";
      readonly tokens: readonly string[];
      readonly secret: string | undefined;
      readonly publicKey: string | undefined;
      readonly issuer: string | undefined;
      readonly audience: string | undefined;
    };
  };
  /** Limits of `POST /graphql`, set by keys of `[server]`. */
  readonly graphql: {
    /** Largest GraphQL request body, bytes; larger ones get 413. (Default: 1 MiB, 1048576) */
    readonly maxBodySize: number;
    /** Deepest field nesting of a GraphQL operation (introspection fields excluded). (Default: 10) */
    readonly maxDepth: number;
    /**
     * Largest complexity of a GraphQL operation: each field counts 1, multiplied by the page size
     * of every list above it (`limit`, or 100 without one). (Default: 50000)
     */
    readonly maxComplexity: number;
    /** Whether `__schema` and `__type` may be queried. (Default: true on a loopback host, else false) */
    readonly introspection: boolean;
  };
  readonly entities: readonly EntityModel[];
  readonly observers: readonly ObserverModel[];
  readonly webhooks: {
    /** Per-request timeout, ms. (Default: 30000) */
    readonly timeout: number;
    readonly testUrl: string | undefined;
    readonly retry: RetryPolicy;
    readonly dispatch: DispatchConfig;
    readonly batching: { readonly enabled: boolean; readonly batchSize: number; readonly timeout: number };
    readonly rateLimiting: {
      readonly enabled: boolean;
      readonly maxPerSecond: number;
      readonly burst: number;
    };
    readonly signing: SigningConfig;
    readonly dlq: DlqConfig;
    /**
     * Hosts, addresses and CIDR ranges that requests may reach even when private: exceptions to
     * the outbound address policy. (Default: [])
     */
    readonly allowedHosts: readonly string[];
    /**
     * Check every request's address, hosts written in the config included (by default only hosts
     * that come from event data are checked). (Default: false)
     */
    readonly blockPrivateNetworks: boolean;
    /** PEM text of `[webhooks] ca`, trusted for HTTPS besides the bundled roots. (Default: none) */
    readonly ca: string | undefined;
    /** Largest request body sent, bytes; larger ones are dead-lettered unsent. (Default: 1 MB, 1000000) */
    readonly maxPayloadSize: number;
  };
  readonly observability: {
    readonly prometheus: {
      readonly enabled: boolean;
      /** (Default: 9090) */
      readonly port: number;
      /** (Default: "127.0.0.1") */
      readonly host: string;
      /** (Default: "fraiseql") */
      readonly namespace: string;
    };
  };
  /** Every value that came from `${ENV}`; redacted wherever text leaves the process. */
  readonly secrets: readonly string[];
}
