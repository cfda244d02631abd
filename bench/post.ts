/**
 * The HTTP baselines: how fast this one Node process can POST signed JSON bodies to the
 * receiver with nothing else to do. The drain figure is compared with these.
 */

import { randomUUID } from "node:crypto";
import { Pool } from "undici";
import { createUndiciSender } from "../src/delivery/http.js";
import { signatureHeaders } from "../src/delivery/signing.js";
import type { CpuProbe, CpuUse } from "./cpu.js";
import { BENCH_API_KEY, BENCH_SECRET, orderBody } from "./workload.js";

/** Options of {@link rawPostRate} and {@link senderPostRate}. */
export interface PostOptions {
  /** Base URL of the receiver, `http://127.0.0.1:PORT`. */
  readonly receiverUrl: string;
  /** Requests timed. */
  readonly requests: number;
  /** Requests in flight at once. (Default: 128) */
  readonly concurrency?: number;
  /** Connections of the undici Pool. (Default: 64) */
  readonly connections?: number;
  /** Untimed requests sent first, to open the connections and warm the JIT. (Default: 500) */
  readonly warmup?: number;
  /** Measures CPU use over the timed part. (Default: none) */
  readonly cpu?: () => CpuProbe;
}

/** A measured request rate. */
export interface RateResult {
  readonly count: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** When a probe was given. */
  readonly cpu?: CpuUse;
}

/** The headers a delivery carries, signed the way the dispatcher signs them. */
function deliveryHeaders(body: string): Record<string, string> {
  const deliveryId = randomUUID();
  return {
    "Content-Type": "application/json",
    Authorization: `Bearer ${BENCH_API_KEY}`,
    "X-FraiseQL-Delivery": deliveryId,
    "X-FraiseQL-Attempt": "1",
    ...signatureHeaders(body, { scheme: "fraiseql", secrets: [BENCH_SECRET], deliveryId }),
  };
}

/** Runs `count` calls of `send(i)` with `concurrency` of them in flight; returns the rate. */
async function timed(
  count: number,
  concurrency: number,
  send: (i: number) => Promise<void>,
  probe?: CpuProbe,
): Promise<RateResult> {
  let next = 0;
  await probe?.start();
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      const i = next++;
      await send(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const seconds = (performance.now() - started) / 1000;
  const cpu = await probe?.stop();
  return { count, seconds, perSecond: count / seconds, ...(cpu ? { cpu } : {}) };
}

/**
 * Baseline (1): signed POSTs through a bare undici `Pool` (64 connections, 128 in flight), the
 * body built and signed per request as the dispatcher does, the response body drained.
 */
export async function rawPostRate(options: PostOptions): Promise<RateResult> {
  const pool = new Pool(options.receiverUrl, {
    connections: options.connections ?? 64,
    pipelining: 1,
    keepAliveTimeout: 30_000,
  });
  const send = async (i: number) => {
    const body = orderBody(i);
    const res = await pool.request({
      path: "/hooks/orders",
      method: "POST",
      headers: deliveryHeaders(body),
      body,
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`receiver answered ${res.statusCode}`);
  };
  try {
    const concurrency = options.concurrency ?? 128;
    await timed(options.warmup ?? 500, concurrency, send);
    return await timed(options.requests, concurrency, send, options.cpu?.());
  } finally {
    await pool.close();
  }
}

/**
 * The same requests through the project's `HttpSender` (`createUndiciSender`, what the
 * dispatcher uses), so the cost of the sender itself is visible apart from the database.
 */
export async function senderPostRate(options: PostOptions): Promise<RateResult> {
  const sender = createUndiciSender(
    options.connections === undefined ? {} : { connections: options.connections },
  );
  const url = `${options.receiverUrl}/hooks/orders`;
  const send = async (i: number) => {
    const body = orderBody(i);
    const result = await sender.send({
      url,
      method: "POST",
      headers: deliveryHeaders(body),
      body,
      timeout: 30_000,
    });
    if (result.outcome.kind !== "success") {
      throw new Error(`receiver answered ${JSON.stringify(result.outcome)}`);
    }
  };
  try {
    const concurrency = options.concurrency ?? 128;
    await timed(options.warmup ?? 500, concurrency, send);
    return await timed(options.requests, concurrency, send, options.cpu?.());
  } finally {
    await sender.close();
  }
}
