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
    async send(attempt) {
      const started = performance.now();
      if (attempt.method !== "GET" && attempt.body.length > maxPayload / 3) {
        const size = Buffer.byteLength(attempt.body);
        if (size > maxPayload) {
          return invalidRequest(
            `the body is ${size} bytes, over [webhooks] max_payload_size (${maxPayload} bytes); it was not sent`,
            0,
          );
        }
      }
      const url = new URL(attempt.url);
      // No timer per request (an AbortSignal.timeout cost a quarter of the throughput): undici's
      // headersTimeout bounds the wait for the answer, bodyTimeout each silence in the body, and a
      // body still arriving after the deadline is cut below.
      const deadline = started + attempt.timeout;
      let overDeadline = false;
      try {
        const checked = attempt.untrustedHost === true || policy.blockPrivateNetworks;
        const res = await poolFor(url.origin, checked).request({
          path: url.pathname + url.search,
          method: attempt.method as "POST",
          headers: attempt.headers as Record<string, string>,
          body: attempt.method === "GET" ? null : attempt.body,
          headersTimeout: attempt.timeout,
          bodyTimeout: attempt.timeout,
        });
        let excerpt = "";
        let size = 0;
        for await (const chunk of res.body) {
          if (size < excerptBytes) {
            const buf = chunk as Buffer;
            excerpt += buf.subarray(0, excerptBytes - size).toString("utf8");
          }
          size += (chunk as Buffer).length;
          if (performance.now() > deadline) {
            overDeadline = true;
            res.body.destroy();
            break;
          }
        }
        if (overDeadline) {
          return {
            outcome: { kind: "timeout" },
            excerpt: undefined,
            error: `the response did not finish within ${attempt.timeout}ms`,
            durationMs: performance.now() - started,
          };
        }
        const durationMs = performance.now() - started;
        const status = res.statusCode;
        if (status >= 200 && status < 300) {
          return { outcome: { kind: "success", status }, excerpt, error: undefined, durationMs };
        }
        const header = res.headers["retry-after"];
        const ra = parseRetryAfter(Array.isArray(header) ? header[0] : header);
        return {
          outcome: ra === undefined ? { kind: "http", status } : { kind: "http", status, retryAfterMs: ra },
          excerpt,
          error: `HTTP ${status}`,
          durationMs,
        };
      } catch (err) {
        const durationMs = performance.now() - started;
        if (err instanceof AddressRefused) return invalidRequest(err.message, durationMs);
        const e = err as { code?: string; name?: string; message?: string };
        if (e.name === "TimeoutError" || (e.code && TIMEOUT_CODES.has(e.code))) {
          return {
            outcome: { kind: "timeout" },
            excerpt: undefined,
            error: `no response within ${attempt.timeout}ms`,
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
    },
    async close() {
      const all = [...pools.values(), ...checkedPools.values()];
      pools.clear();
      checkedPools.clear();
      await Promise.all(all.map((p) => p.close().catch(() => {})));
    },
  };
}
