/**
 * A real HTTP receiver for tests (SPEC §10): it listens on a port (0: a free one), records every
 * request and answers from a script, so a test can assert what was delivered and exercise retries,
 * timeouts and dropped connections end to end.
 *
 * ```ts
 * await using mock = await MockWebhookServer.start({ secret: "s3cret", responses: [{ status: 500 }, { status: 500 }] });
 * // ... point a webhook at `${mock.url}/hook`, trigger it ...
 * await mock.waitForCalls(3);
 * assert.equal(mock.lastPayload.order_id, "42");
 * assert.ok(mock.calls.every((c) => c.signatureValid));
 * ```
 *
 * How a request is answered, first match wins:
 * 1. the {@link MockWebhookServer.respond} handler, when it returns a response;
 * 2. the next unused scripted response of the request's path ({@link MockWebhookServer.route}),
 *    then that route's default;
 * 3. the next unused response of the server-wide script (`responses`, {@link MockWebhookServer.script});
 * 4. `defaultResponse` (200 "OK").
 */

import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import {
  DEFAULT_SIGNATURE_HEADER,
  DEFAULT_TIMESTAMP_HEADER,
  type SignatureScheme,
  type VerifyResult,
  verifyWebhook,
} from "../delivery/signing.js";

/** One scripted answer. Every key is optional; `{}` is a 200 "OK". */
export interface ScriptedResponse {
  /** (Default: 200) */
  status?: number;
  /** Response headers, e.g. `{ "Retry-After": "2" }`. */
  headers?: Readonly<Record<string, string>>;
  /** A string is sent as text; anything else as JSON. (Default: "OK") */
  body?: unknown;
  /** Answer (or drop) this many ms late, e.g. to trip the sender's timeout. (Default: 0) */
  delayMs?: number;
  /** Destroy the connection without answering (the sender sees a connection error). (Default: false) */
  drop?: boolean;
  /** Never answer; the request stays open until the sender gives up or the server closes. (Default: false) */
  hang?: boolean;
}

/** One request as received. */
export interface RecordedCall {
  readonly method: string;
  /** Path without the query string, e.g. `/hooks/orders`. */
  readonly path: string;
  /** The request target as sent, query string included. */
  readonly url: string;
  /** Header names in lower case, as Node gives them. */
  readonly headers: IncomingHttpHeaders;
  /** The raw body as UTF-8 text. */
  readonly body: string;
  /** The body parsed as JSON; undefined when it is not JSON. */
  // biome-ignore lint/suspicious/noExplicitAny: test code indexes payloads freely (`call.json.order_id`).
  readonly json: any;
  /** `Date.now()` when the body was fully received. */
  readonly receivedAt: number;
  /** `X-FraiseQL-Delivery`, when sent. */
  readonly deliveryId: string | undefined;
  /** `X-FraiseQL-Attempt` as a number, when sent. */
  readonly attempt: number | undefined;
  /** With a `secret`: whether the signature verifies. Undefined without a secret. */
  readonly signatureValid?: boolean;
  /** With a `secret`: the full verification result (the failure reason, if any). */
  readonly signature?: VerifyResult;
}

/** Options of {@link MockWebhookServer.start}. */
export interface MockWebhookServerOptions {
  /** (Default: 0, a free port) */
  port?: number;
  /** (Default: "127.0.0.1") */
  host?: string;
  /** When set, every call's signature is checked with `verifyWebhook` (rotation: several). */
  secret?: string | readonly string[];
  /** (Default: "fraiseql") */
  scheme?: SignatureScheme;
  /** `fraiseql` scheme. (Default: "X-FraiseQL-Signature") */
  header?: string;
  /** `fraiseql` scheme. (Default: "X-FraiseQL-Timestamp") */
  timestampHeader?: string;
  /** Signature timestamp tolerance, seconds. (Default: 300) */
  toleranceSeconds?: number;
  /** With a `secret`: answer 401 to a request whose signature does not verify. (Default: false) */
  rejectInvalidSignatures?: boolean;
  /** Server-wide script, consumed in order. (Default: none) */
  responses?: readonly ScriptedResponse[];
  /** The answer once the scripts are used up. (Default: `{ status: 200 }`, body "OK") */
  defaultResponse?: ScriptedResponse;
}

/** A per-request answer function; returning undefined falls through to the scripts. */
export type ResponseHandler = (
  call: RecordedCall,
) => ScriptedResponse | undefined | Promise<ScriptedResponse | undefined>;

interface Route {
  queue: ScriptedResponse[];
  fallback: ScriptedResponse | undefined;
}

interface Waiter {
  n: number;
  path: string | undefined;
  resolve: (calls: RecordedCall[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_RESPONSE: ScriptedResponse = { status: 200 };

/** A recording, scriptable HTTP receiver. Create it with {@link MockWebhookServer.start}. */
export class MockWebhookServer {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:49152`. */
  readonly url: string;
  /** The port listened on. */
  readonly port: number;

  readonly #server: Server;
  readonly #opts: MockWebhookServerOptions;
  readonly #secrets: readonly string[] | undefined;
  #calls: RecordedCall[] = [];
  #queue: ScriptedResponse[];
  #queueHead = 0;
  #routes = new Map<string, Route>();
  #handler: ResponseHandler | undefined;
  #waiters = new Set<Waiter>();
  #timers = new Set<NodeJS.Timeout>();
  #closed: Promise<void> | undefined;

  private constructor(server: Server, opts: MockWebhookServerOptions) {
    this.#server = server;
    this.#opts = opts;
    this.#secrets =
      opts.secret === undefined ? undefined : typeof opts.secret === "string" ? [opts.secret] : opts.secret;
    this.#queue = [...(opts.responses ?? [])];
    const addr = server.address() as AddressInfo;
    this.port = addr.port;
    const host = addr.family === "IPv6" || addr.address.includes(":") ? `[${addr.address}]` : addr.address;
    this.url = `http://${host}:${addr.port}`;
  }

  /** Starts listening; resolves once the port is bound (rejects when it cannot be, e.g. in use). */
  static async start(opts: MockWebhookServerOptions = {}): Promise<MockWebhookServer> {
    let instance: MockWebhookServer | undefined;
    const server = createServer((req, res) => {
      // Requests cannot arrive before listen() resolved, so the instance always exists here.
      if (instance !== undefined) instance.#onRequest(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    instance = new MockWebhookServer(server, opts);
    return instance;
  }

  /** Every request received, oldest first (since start or the last {@link reset}). */
  get calls(): readonly RecordedCall[] {
    return this.#calls;
  }

  /** How many requests were received. */
  get callCount(): number {
    return this.#calls.length;
  }

  /** True once at least one request was received. */
  get called(): boolean {
    return this.#calls.length > 0;
  }

  /** The last request's body parsed as JSON, or its raw text when it is not JSON; undefined before any call. */
  // biome-ignore lint/suspicious/noExplicitAny: test code indexes payloads freely (`mock.lastPayload.order_id`).
  get lastPayload(): any {
    const last = this.#calls[this.#calls.length - 1];
    if (last === undefined) return undefined;
    return last.json === undefined ? last.body : last.json;
  }

  /** The calls whose path is `path`. */
  callsTo(path: string): RecordedCall[] {
    return this.#calls.filter((c) => c.path === path);
  }

  /** Appends responses to the server-wide script. */
  script(responses: readonly ScriptedResponse[]): this {
    this.#queue.push(...responses);
    return this;
  }

  /**
   * Scripts the answers of one path (exact match, query string ignored): `responses` in order,
   * then `fallback` when given, else the server-wide script/default. Replaces an earlier route of
   * the same path.
   */
  route(path: string, responses: readonly ScriptedResponse[], fallback?: ScriptedResponse): this {
    this.#routes.set(path, { queue: [...responses], fallback });
    return this;
  }

  /** Answers every request with `fn` (undefined from `fn`: the scripts decide); `undefined` removes it. */
  respond(fn: ResponseHandler | undefined): this {
    this.#handler = fn;
    return this;
  }

  /**
   * Resolves with the calls once at least `n` were received (counting only `path` when given);
   * rejects after `timeoutMs` with a message listing what did arrive, or when the server closes.
   *
   * @param timeoutMs (Default: 5000)
   */
  waitForCalls(n: number, timeoutMs = 5000, path?: string): Promise<RecordedCall[]> {
    const current = path === undefined ? this.#calls : this.callsTo(path);
    if (current.length >= n) return Promise.resolve([...current]);
    if (this.#closed !== undefined)
      return Promise.reject(new Error("MockWebhookServer: the server is closed"));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        n,
        path,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          const got = path === undefined ? this.#calls : this.callsTo(path);
          const seen = got
            .slice(-10)
            .map((c) => `${c.method} ${c.url}`)
            .join(", ");
          reject(
            new Error(
              `MockWebhookServer: expected ${n} call(s)${path === undefined ? "" : ` to ${path}`} within ${timeoutMs} ms, ` +
                `received ${got.length}${seen ? ` (${got.length > 10 ? "last 10: " : ""}${seen})` : ""}`,
            ),
          );
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /**
   * Forgets the recorded calls, the rest of the server-wide script, the routes and the
   * {@link respond} handler; keeps the port, the secret and `defaultResponse`.
   */
  reset(): void {
    this.#calls = [];
    this.#queue = [];
    this.#queueHead = 0;
    this.#routes.clear();
    this.#handler = undefined;
  }

  /**
   * Stops the server: open connections are destroyed (hanging and delayed requests included), and
   * pending {@link waitForCalls} promises reject. Safe to call twice.
   */
  close(): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(`MockWebhookServer: closed while waiting for ${w.n} call(s)`));
    }
    this.#waiters.clear();
    this.#closed = new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }

  /** `await using mock = await MockWebhookServer.start()` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      const call = this.#record(req, raw);
      this.#answer(call, res).catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(`MockWebhookServer: respond() handler threw: ${String(err)}`);
        }
      });
    });
    // A sender that aborts mid-body leaves nothing to record.
    req.on("error", () => {});
  }

  #record(req: IncomingMessage, raw: Buffer): RecordedCall {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const body = raw.toString("utf8");
    let json: unknown;
    if (body.length > 0) {
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
    }
    const deliveryId = req.headers["x-fraiseql-delivery"];
    const attempt = req.headers["x-fraiseql-attempt"];
    let signature: VerifyResult | undefined;
    if (this.#secrets !== undefined) {
      const o = this.#opts;
      signature = verifyWebhook(raw, req.headers, {
        secret: this.#secrets,
        scheme: o.scheme ?? "fraiseql",
        header: o.header ?? DEFAULT_SIGNATURE_HEADER,
        timestampHeader: o.timestampHeader ?? DEFAULT_TIMESTAMP_HEADER,
        ...(o.toleranceSeconds === undefined ? {} : { toleranceSeconds: o.toleranceSeconds }),
      });
    }
    const call: RecordedCall = {
      method: req.method ?? "GET",
      path: q === -1 ? url : url.slice(0, q),
      url,
      headers: req.headers,
      body,
      json,
      receivedAt: Date.now(),
      deliveryId: typeof deliveryId === "string" ? deliveryId : undefined,
      attempt: typeof attempt === "string" && /^\d+$/.test(attempt) ? Number(attempt) : undefined,
      ...(signature === undefined ? {} : { signature, signatureValid: signature.ok }),
    };
    this.#calls.push(call);
    if (this.#waiters.size > 0) this.#notify(call);
    return call;
  }

  #notify(call: RecordedCall): void {
    for (const w of this.#waiters) {
      if (w.path !== undefined && w.path !== call.path) continue;
      const got = w.path === undefined ? this.#calls : this.callsTo(w.path);
      if (got.length >= w.n) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.resolve([...got]);
      }
    }
  }

  #next(call: RecordedCall): ScriptedResponse {
    const route = this.#routes.get(call.path);
    if (route !== undefined) {
      const r = route.queue.shift();
      if (r !== undefined) return r;
      if (route.fallback !== undefined) return route.fallback;
    }
    if (this.#queueHead < this.#queue.length) {
      const r = this.#queue[this.#queueHead++]!;
      // Keeps a long script from holding its consumed head forever.
      if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#queueHead);
        this.#queueHead = 0;
      }
      return r;
    }
    return this.#opts.defaultResponse ?? DEFAULT_RESPONSE;
  }

  async #answer(call: RecordedCall, res: ServerResponse): Promise<void> {
    let r: ScriptedResponse | undefined;
    if (this.#opts.rejectInvalidSignatures === true && call.signatureValid === false) {
      r = {
        status: 401,
        body: `invalid signature: ${call.signature?.ok === false ? call.signature.reason : ""}`,
      };
    } else if (this.#handler !== undefined) {
      r = await this.#handler(call);
    }
    r ??= this.#next(call);
    if (r.hang === true) return;
    const delay = r.delayMs ?? 0;
    if (delay > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.#timers.delete(t);
          resolve();
        }, delay);
        this.#timers.add(t);
      });
      if (this.#closed !== undefined) return;
    }
    if (res.destroyed) return;
    if (r.drop === true) {
      res.socket?.destroy();
      return;
    }
    const isText = r.body === undefined || typeof r.body === "string";
    const payload =
      r.body === undefined ? "OK" : typeof r.body === "string" ? r.body : JSON.stringify(r.body);
    const headers: Record<string, string> = {
      "content-type": isText ? "text/plain; charset=utf-8" : "application/json",
      ...r.headers,
    };
    res.writeHead(r.status ?? 200, headers);
    res.end(payload);
  }
}
