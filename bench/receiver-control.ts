/** Starts `bench/receiver.ts` as a child process and talks to it over IPC. */

import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Receipt, ReceiverBehaviour, ReceiverReply, ReceiverRequest } from "./receiver.js";
import { onCleanup } from "./resources.js";

/** The receiver child process. */
export interface Receiver {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly pid: number;
  /** Requests received since the last reset. */
  count(reset?: boolean): Promise<number>;
  /** Requests and the events they carried since the last reset (events are counted while `parse` is on). */
  counts(reset?: boolean): Promise<{ count: number; events: number }>;
  /** The child's CPU time so far, µs. */
  cpuMicros(): Promise<number>;
  /** Changes how it answers; omitted keys go back to their default (200 at once, no parsing). */
  configure(behaviour: ReceiverBehaviour): Promise<void>;
  /** The receipts kept in `record` mode, from index `from`; `reset` drops them all. */
  records(from?: number, reset?: boolean): Promise<{ records: Receipt[]; total: number }>;
  /** Tells it that worker `pid` was stopped or continued (it continues stopped ones if this process dies). */
  notePaused(pid: number, paused: boolean): void;
}

/** Forks the receiver, registers its shutdown as a cleanup, and resolves once it listens. */
export async function startReceiver(): Promise<Receiver> {
  const child: ChildProcess = fork(fileURLToPath(new URL("./receiver.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  onCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.send({ type: "close" } satisfies ReceiverRequest);
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(timer);
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`receiver exited with ${code} before listening`)));
    child.once("message", (message: ReceiverReply) => {
      if (message.type === "listening") resolve(message.port);
    });
  });
  // One question at a time: replies are matched to questions by their type only.
  let queue: Promise<unknown> = Promise.resolve();
  const ask = <T extends ReceiverReply["type"]>(
    request: ReceiverRequest,
    type: T,
  ): Promise<Extract<ReceiverReply, { type: T }>> => {
    const next = queue.then(
      () =>
        new Promise<Extract<ReceiverReply, { type: T }>>((resolve) => {
          const onMessage = (message: ReceiverReply) => {
            if (message.type !== type) return;
            child.off("message", onMessage);
            resolve(message as Extract<ReceiverReply, { type: T }>);
          };
          child.on("message", onMessage);
          child.send(request);
        }),
    );
    queue = next.catch(() => {});
    return next;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid ?? 0,
    count: async (reset = false) => (await ask({ type: "count", reset }, "count")).count,
    counts: async (reset = false) => {
      const { count, events } = await ask({ type: "count", reset }, "count");
      return { count, events };
    },
    cpuMicros: async () => (await ask({ type: "count", reset: false }, "count")).cpuMicros,
    configure: async (behaviour) => {
      await ask({ type: "configure", ...behaviour }, "configured");
    },
    notePaused: (pid, paused) => {
      if (child.connected) child.send({ type: "paused", pid, paused } satisfies ReceiverRequest);
    },
    records: async (from = 0, reset = false) => {
      const { records, total } = await ask({ type: "records", from, reset }, "records");
      return { records, total };
    },
  };
}
