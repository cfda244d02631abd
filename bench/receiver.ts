/**
 * The webhook receiver of the benchmark, run as a child process of `bench/run.ts` so the sender
 * and the receiver do not share one event loop. By default it answers 200 with an empty body to
 * every request and counts them; nothing else, so that it is never what limits a figure. A figure
 * may ask it to answer another status, to answer late, and to parse and record each request.
 *
 * Protocol over the IPC channel (`child_process.fork`):
 * - child -> parent `{ type: "listening", port }` once the server is up;
 * - parent -> child `{ type: "count", reset?: boolean }`, answered with `{ type: "count", count,
 *   events, cpuMicros }`: the requests whose body was fully read since the last reset, the events
 *   they carried (the length of a body's `orders` array, else 1; counted only while `parse` is
 *   on, else equal to `count`), and this process's CPU time so far (user + system, µs);
 * - parent -> child `{ type: "configure", status?, delayMs?, parse?, record? }`: from now on
 *   answer `status` (Default: 200) after `delayMs` (Default: 0), parse JSON bodies (Default:
 *   false) and keep a {@link Receipt} per request (Default: false; implies `parse`); answered
 *   with `{ type: "configured" }`. Omitted keys take their default again;
 * - parent -> child `{ type: "records", from?, reset? }`: the receipts kept, from index `from`
 *   (Default: 0), answered with `{ type: "records", records, total }`; `reset` drops them all
 *   after answering;
 * - parent -> child `{ type: "paused", pid, paused }`, not answered: worker process `pid` was
 *   stopped with SIGSTOP (or continued). A stopped worker cannot notice that the benchmark went
 *   away; when it does, this child sends SIGCONT to the workers still stopped, whose own guard
 *   (`bench/worker-guard.mjs`) then shuts them down;
 * - parent -> child `{ type: "close" }`: closes the server and exits.
 *
 * The child exits by itself when the parent goes away (IPC disconnect).
 */

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";

/** One request, as kept in `record` mode. */
export interface Receipt {
  /** When the body had been read, ms since the epoch (fractional). */
  readonly at: number;
  /** `X-FraiseQL-Delivery`, or "" without one. */
  readonly delivery: string;
  /** `X-FraiseQL-Attempt`, or 0 without one. */
  readonly attempt: number;
  /** Events in the request: the length of the body's `orders` array, else 1. */
  readonly events: number;
  /** The body's `sent_ms` when it is a number (ms since the epoch), else null. */
  readonly sent: number | null;
}

/** How the receiver answers, set by a `configure` message. */
export interface ReceiverBehaviour {
  /** Status of every answer. (Default: 200) */
  readonly status?: number;
  /** Wait this long before answering, ms. (Default: 0) */
  readonly delayMs?: number;
  /** Parse JSON bodies to count the events they carry. (Default: false) */
  readonly parse?: boolean;
  /** Keep a {@link Receipt} per request. (Default: false; implies `parse`) */
  readonly record?: boolean;
}

/** A message from `bench/run.ts`. */
export type ReceiverRequest =
  | { type: "count"; reset?: boolean }
  | ({ type: "configure" } & ReceiverBehaviour)
  | { type: "records"; from?: number; reset?: boolean }
  | { type: "paused"; pid: number; paused: boolean }
  | { type: "close" };

/** A message to `bench/run.ts`. */
export type ReceiverReply =
  | { type: "listening"; port: number }
  | { type: "count"; count: number; events: number; cpuMicros: number }
  | { type: "configured" }
  | { type: "records"; records: Receipt[]; total: number };

let count = 0;
let events = 0;
let behaviour: ReceiverBehaviour = {};
let receipts: Receipt[] = [];
/** Worker processes the benchmark has stopped (SIGSTOP) and not continued yet. */
const paused = new Set<number>();

/** Events in a parsed body: a batch carries them in its `orders` array. */
function eventsIn(body: unknown): number {
  const orders = (body as { orders?: unknown } | null)?.orders;
  return Array.isArray(orders) ? orders.length : 1;
}

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const { status = 200, delayMs = 0, record = false } = behaviour;
  const parse = record || behaviour.parse === true;
  const chunks: Buffer[] = [];
  if (parse) req.on("data", (chunk: Buffer) => chunks.push(chunk));
  else req.resume();
  req.on("end", () => {
    const at = performance.timeOrigin + performance.now();
    count++;
    if (parse) {
      let body: unknown = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        // Not JSON: counted as one event.
      }
      const n = eventsIn(body);
      events += n;
      if (record) {
        const sent = (body as { sent_ms?: unknown } | null)?.sent_ms;
        receipts.push({
          at,
          delivery: String(req.headers["x-fraiseql-delivery"] ?? ""),
          attempt: Number(req.headers["x-fraiseql-attempt"] ?? 0),
          events: n,
          sent: typeof sent === "number" ? sent : null,
        });
      }
    } else {
      events++;
    }
    const answer = () => {
      // The sender may have gone (a killed worker): nothing to answer then.
      if (res.destroyed) return;
      res.writeHead(status, { "Content-Length": "0" });
      res.end();
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  res.on("error", () => {});
});
// The benchmark keeps its connections for the whole run; Node's default request timeout and
// per-socket limits would only add reconnects to the figures.
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.on("clientError", (_err, socket) => socket.destroy());

function reply(message: ReceiverReply): void {
  process.send?.(message);
}

process.on("message", (message: ReceiverRequest) => {
  if (message.type === "count") {
    const cpu = process.cpuUsage();
    reply({ type: "count", count, events, cpuMicros: cpu.user + cpu.system });
    if (message.reset) {
      count = 0;
      events = 0;
    }
  } else if (message.type === "configure") {
    const { type: _type, ...rest } = message;
    behaviour = rest;
    reply({ type: "configured" });
  } else if (message.type === "records") {
    const from = message.from ?? 0;
    reply({ type: "records", records: receipts.slice(from), total: receipts.length });
    if (message.reset) receipts = [];
  } else if (message.type === "paused") {
    if (message.paused) paused.add(message.pid);
    else paused.delete(message.pid);
  } else if (message.type === "close") {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
process.on("disconnect", () => {
  for (const pid of paused) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // Already gone.
    }
  }
  process.exit(0);
});

server.listen(0, "127.0.0.1", () => {
  reply({ type: "listening", port: (server.address() as AddressInfo).port });
});
