/**
 * The webhook receiver of the benchmark, run as a child process of `bench/run.ts` so the sender
 * and the receiver do not share one event loop. It answers 200 with an empty body to every
 * request and counts them; nothing else, so that it is never what limits a figure.
 *
 * Protocol over the IPC channel (`child_process.fork`):
 * - child -> parent `{ type: "listening", port }` once the server is up;
 * - parent -> child `{ type: "count", reset?: boolean }`, answered with `{ type: "count", count }`
 *   (the count of requests whose body was fully read since the last reset) and `cpuMicros`, this
 *   process's CPU time so far (user + system, µs);
 * - parent -> child `{ type: "close" }`: closes the server and exits.
 *
 * The child exits by itself when the parent goes away (IPC disconnect).
 */

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/** A message from `bench/run.ts`. */
export type ReceiverRequest = { type: "count"; reset?: boolean } | { type: "close" };

/** A message to `bench/run.ts`. */
export type ReceiverReply =
  | { type: "listening"; port: number }
  | { type: "count"; count: number; cpuMicros: number };

let count = 0;

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  req.on("end", () => {
    count++;
    res.writeHead(200, { "Content-Length": "0" });
    res.end();
  });
  req.resume();
});
// The benchmark keeps its connections for the whole run; Node's default request timeout and
// per-socket limits would only add reconnects to the figures.
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;

function reply(message: ReceiverReply): void {
  process.send?.(message);
}

process.on("message", (message: ReceiverRequest) => {
  if (message.type === "count") {
    const cpu = process.cpuUsage();
    reply({ type: "count", count, cpuMicros: cpu.user + cpu.system });
    if (message.reset) count = 0;
  } else if (message.type === "close") {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  }
});
process.on("disconnect", () => process.exit(0));

server.listen(0, "127.0.0.1", () => {
  reply({ type: "listening", port: (server.address() as AddressInfo).port });
});
