import { Pool } from "undici";
import { type AttemptOutcome, parseRetryAfter } from "./retry.js";

/** One HTTP attempt as the dispatcher hands it to the sender. */
export interface HttpAttempt {
  readonly url: string;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** ms */
  readonly timeout: number;
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
}

const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

/**
 * Sends attempts through one undici `Pool` per origin (keep-alive connections reused across
 * deliveries), which is several times faster than `fetch` on this path.
 */
export function createUndiciSender(options: UndiciSenderOptions = {}): HttpSender {
  const pools = new Map<string, Pool>();
  const excerptBytes = options.excerptBytes ?? 1024;
  const poolFor = (origin: string): Pool => {
    let pool = pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: options.connections ?? 64,
        pipelining: options.pipelining ?? 1,
        keepAliveTimeout: 30_000,
      });
      pools.set(origin, pool);
    }
    return pool;
  };

  return {
    async send(attempt) {
      const started = performance.now();
      const url = new URL(attempt.url);
      const signal = AbortSignal.timeout(attempt.timeout);
      try {
        const res = await poolFor(url.origin).request({
          path: url.pathname + url.search,
          method: attempt.method as "POST",
          headers: attempt.headers as Record<string, string>,
          body: attempt.method === "GET" ? null : attempt.body,
          headersTimeout: attempt.timeout,
          bodyTimeout: attempt.timeout,
          signal,
        });
        let excerpt = "";
        let size = 0;
        for await (const chunk of res.body) {
          if (size < excerptBytes) {
            const buf = chunk as Buffer;
            excerpt += buf.subarray(0, excerptBytes - size).toString("utf8");
          }
          size += (chunk as Buffer).length;
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
        const e = err as { code?: string; name?: string; message?: string };
        if (signal.aborted || e.name === "TimeoutError" || (e.code && TIMEOUT_CODES.has(e.code))) {
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
      await Promise.all([...pools.values()].map((p) => p.close().catch(() => {})));
      pools.clear();
    },
  };
}
