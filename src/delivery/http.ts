import { rootCertificates } from "node:tls";
import { buildConnector, Pool } from "undici";
import type { ResolvedConfig } from "../config/types.js";
import {
  AddressRefused,
  createAddressPolicy,
  guardConnector,
  type HostLookup,
  systemLookup,
} from "./address-policy.js";
import { type AttemptOutcome, parseRetryAfter } from "./retry.js";

/** One HTTP attempt as the dispatcher hands it to the sender. */
export interface HttpAttempt {
  readonly url: string;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** ms */
  readonly timeout: number;
  /**
   * True when the url's host came from event data (a `{{ }}` placeholder in the host part of
   * the action's url, see `hostIsTemplated`): the address connected to is then checked against
   * the outbound address policy. (Default: false: the host was written in the config and is
   * trusted, unless the sender's `blockPrivateNetworks` is on)
   */
  readonly untrustedHost?: boolean;
}

/** What came back, classified for the retry decision. */
export interface HttpResult {
  readonly outcome: AttemptOutcome;
  /** First bytes of the response body (for the delivery history). */
  readonly excerpt: string | undefined;
  /** Short error text for timeouts and connection errors. */
  readonly error: string | undefined;
  readonly durationMs: number;
}

/** The small interface the dispatcher sends through; tests and benches can supply their own. */
export interface HttpSender {
  send(attempt: HttpAttempt): Promise<HttpResult>;
  close(): Promise<void>;
}

export interface UndiciSenderOptions {
  /** Connections per origin. (Default: 64) */
  connections?: number;
  /** Bytes of the response body kept as an excerpt. (Default: 1024) */
  excerptBytes?: number;
  /** Pipelining depth per connection. (Default: 1) */
  pipelining?: number;
  /**
   * Hosts, addresses and CIDR ranges that checked requests may reach even when private
   * (`[webhooks] allowed_hosts`). (Default: [])
   */
  allowedHosts?: readonly string[];
  /** Check every request, not only those whose host came from event data. (Default: false) */
  blockPrivateNetworks?: boolean;
  /**
   * PEM certificates trusted for HTTPS in addition to Node's bundled roots (`[webhooks] ca`).
   * Certificates are always verified. (Default: none)
   */
  ca?: string | readonly string[];
  /**
   * Largest request body sent, in bytes; a larger one is an `invalid_request` outcome and is
   * never sent (`[webhooks] max_payload_size`). (Default: 1000000)
   */
  maxPayloadSize?: number;
  /** Resolver for checked hosts; tests inject one. (Default: `dns.lookup` with `all: true`) */
  lookup?: HostLookup;
  /**
   * Pools kept open for checked origins (hosts chosen by event data can be many); beyond this
   * the least recently used one is closed once its requests finish. (Default: 256)
   */
  maxCheckedPools?: number;
}

/** Default of {@link UndiciSenderOptions.maxPayloadSize} and `[webhooks] max_payload_size`. */
export const DEFAULT_MAX_PAYLOAD_SIZE = 1_000_000;

/** The sender options that `[webhooks]` sets: address policy, extra CA, payload limit. */
export function senderOptionsFromConfig(config: ResolvedConfig): UndiciSenderOptions {
  const w = config.webhooks;
  return {
    allowedHosts: w.allowedHosts,
    blockPrivateNetworks: w.blockPrivateNetworks,
    maxPayloadSize: w.maxPayloadSize,
    ...(w.ca === undefined ? {} : { ca: w.ca }),
  };
}

const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

/** The result of a request refused before or while sending: never retried, dead-lettered. */
export function invalidRequest(message: string, durationMs = 0): HttpResult {
  return { outcome: { kind: "invalid_request", message }, excerpt: undefined, error: message, durationMs };
}

/**
 * Sends attempts through one undici `Pool` per origin (keep-alive connections reused across
 * deliveries), which is several times faster than `fetch` on this path. Redirects are never
 * followed (a 3xx is the receiver's answer). TLS certificates are always verified, against
 * Node's roots plus `ca`; `NODE_TLS_REJECT_UNAUTHORIZED=0` does not turn that off.
 *
 * Requests whose host came from event data (`untrustedHost`), and every request with
 * `blockPrivateNetworks`, go through separate pools whose connections resolve the host once and
 * check the address they connect to (see `address-policy.ts`); a refused address is an
 * `invalid_request` outcome naming the host and the rule. Hosts written in the config keep the
 * plain pools: no extra lookup on the hot path.
 */
export function createUndiciSender(options: UndiciSenderOptions = {}): HttpSender {
  const pools = new Map<string, Pool>();
  const checkedPools = new Map<string, Pool>();
  const excerptBytes = options.excerptBytes ?? 1024;
  const maxPayload = options.maxPayloadSize ?? DEFAULT_MAX_PAYLOAD_SIZE;
  const maxChecked = Math.max(1, options.maxCheckedPools ?? 256);
  const policy = createAddressPolicy({
    ...(options.allowedHosts === undefined ? {} : { allowedHosts: options.allowedHosts }),
    blockPrivateNetworks: options.blockPrivateNetworks ?? false,
  });
  const extraCa = options.ca === undefined ? [] : typeof options.ca === "string" ? [options.ca] : options.ca;
  // Passing rejectUnauthorized explicitly keeps verification on even when the environment says otherwise.
  const connector = buildConnector({
    rejectUnauthorized: true,
    ...(extraCa.length > 0 ? { ca: [...rootCertificates, ...extraCa] } : {}),
  });
  const why = policy.blockPrivateNetworks
    ? "[webhooks] block_private_networks is on"
    : "the url's host comes from event data (a {{ }} placeholder)";
  const checkedConnector = guardConnector(connector, policy, options.lookup ?? systemLookup, why);
  const newPool = (origin: string, connect: typeof connector) =>
    new Pool(origin, {
      connections: options.connections ?? 64,
      pipelining: options.pipelining ?? 1,
      keepAliveTimeout: 30_000,
      connect,
    });
  const poolFor = (origin: string, checked: boolean): Pool => {
    if (!checked) {
      let pool = pools.get(origin);
      if (!pool) {
        pool = newPool(origin, connector);
        pools.set(origin, pool);
      }
      return pool;
    }
    let pool = checkedPools.get(origin);
    if (pool) {
      // Most recently used last, so the first entry is the one to close.
      checkedPools.delete(origin);
    } else {
      pool = newPool(origin, checkedConnector);
      if (checkedPools.size >= maxChecked) {
        const [oldest, old] = checkedPools.entries().next().value as [string, Pool];
        checkedPools.delete(oldest);
        void old.close().catch(() => {});
      }
    }
    checkedPools.set(origin, pool);
    return pool;
  };

  return {
    send(attempt) {
      const started = performance.now();
      if (attempt.method !== "GET" && attempt.body.length > maxPayload / 3) {
        const size = Buffer.byteLength(attempt.body);
        if (size > maxPayload) {
          return Promise.resolve(
            invalidRequest(
              `the body is ${size} bytes, over [webhooks] max_payload_size (${maxPayload} bytes); it was not sent`,
              0,
            ),
          );
        }
      }
      let url: URL;
      try {
        url = new URL(attempt.url);
      } catch {
        return Promise.resolve(invalidRequest("the url is not a valid URL; it was not sent"));
      }
      const checked = attempt.untrustedHost === true || policy.blockPrivateNetworks;
      return new Promise<HttpResult>((resolve) => {
        const handler = new ResponseHandler(attempt.timeout, started, excerptBytes, resolve);
        try {
          poolFor(url.origin, checked).dispatch(
            {
              path: url.pathname + url.search,
              method: attempt.method as "POST",
              headers: attempt.headers as Record<string, string>,
              body: attempt.method === "GET" ? null : attempt.body,
              headersTimeout: attempt.timeout,
              bodyTimeout: attempt.timeout,
            },
            handler,
          );
        } catch (err) {
          handler.onError(err as Error);
        }
      });
    },
    async close() {
      const all = [...pools.values(), ...checkedPools.values()];
      pools.clear();
      checkedPools.clear();
      await Promise.all(all.map((p) => p.close().catch(() => {})));
    },
  };
}

/**
 * Receives one response through undici's dispatch hooks: no response stream and no promise per
 * chunk (`pool.request` builds both; on this path they cost about 5 µs of CPU per request, a
 * sixth of the whole request). Keeps the first `excerptBytes` of the body, and cuts a body still
 * arriving after the deadline (`timeout` after the request got its connection, so that waiting
 * in the pool behind other requests does not count against the receiver): undici's headersTimeout bounds the
 * wait for the answer and bodyTimeout each silence in the body, but not the body's total time,
 * and a timer per request cost a quarter of the throughput.
 */
class ResponseHandler {
  private status = 0;
  private retryAfter: string | undefined;
  private chunks: Buffer[] = [];
  private kept = 0;
  private abort: ((reason?: Error) => void) | undefined;
  private overDeadline = false;
  private done = false;
  private connectedAt: number | undefined;

  constructor(
    private readonly timeout: number,
    private readonly started: number,
    private readonly excerptBytes: number,
    private readonly resolve: (result: HttpResult) => void,
  ) {}

  onConnect(abort: (reason?: Error) => void): void {
    this.abort = abort;
    // The deadline counts from here, when the request has a connection: time queued in the pool
    // behind other requests to the same origin is not the receiver's.
    this.connectedAt = performance.now();
  }

  onHeaders(status: number, rawHeaders: Buffer[] | string[] | null): boolean {
    // An informational answer (103 Early Hints) comes before the real one.
    if (status < 200) return true;
    this.status = status;
    if (status >= 300 && rawHeaders) {
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        if (String(rawHeaders[i]).toLowerCase() === "retry-after") {
          this.retryAfter = String(rawHeaders[i + 1]);
          break;
        }
      }
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.kept < this.excerptBytes) {
      const part =
        chunk.length <= this.excerptBytes - this.kept
          ? chunk
          : chunk.subarray(0, this.excerptBytes - this.kept);
      this.chunks.push(part);
      this.kept += part.length;
    }
    if (performance.now() - (this.connectedAt ?? this.started) > this.timeout) {
      this.overDeadline = true;
      this.abort?.(new Error("response over its deadline"));
      return false;
    }
    return true;
  }

  onComplete(): void {
    if (this.done) return;
    this.done = true;
    const durationMs = performance.now() - this.started;
    const status = this.status;
    const excerpt =
      this.chunks.length === 0
        ? ""
        : (this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks)).toString(
            "utf8",
          );
    if (status >= 200 && status < 300) {
      this.resolve({ outcome: { kind: "success", status }, excerpt, error: undefined, durationMs });
      return;
    }
    const ra = parseRetryAfter(this.retryAfter);
    this.resolve({
      outcome: ra === undefined ? { kind: "http", status } : { kind: "http", status, retryAfterMs: ra },
      excerpt,
      error: `HTTP ${status}`,
      durationMs,
    });
  }

  onError(err: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.overDeadline) {
      this.resolve({
        outcome: { kind: "timeout" },
        excerpt: undefined,
        error: `the response did not finish within ${this.timeout}ms`,
        durationMs: performance.now() - this.started,
      });
      return;
    }
    this.resolve(failed(err, this.timeout, this.started));
  }
}

/** The result of a request that got no complete answer: refused, timed out or not connected. */
function failed(err: unknown, timeout: number, started: number): HttpResult {
  const durationMs = performance.now() - started;
  if (err instanceof AddressRefused) return invalidRequest(err.message, durationMs);
  const e = err as { code?: string; name?: string; message?: string };
  if (e.code && TIMEOUT_CODES.has(e.code)) {
    return {
      outcome: { kind: "timeout" },
      excerpt: undefined,
      error: `no response within ${timeout}ms`,
      durationMs,
    };
  }
  const code = e.code ?? e.name ?? "ERROR";
  return {
    outcome: { kind: "connection", code },
    excerpt: undefined,
    error: `${code}: ${e.message ?? "connection failed"}`,
    durationMs,
  };
}
