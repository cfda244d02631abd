/**
 * Where the CPU went during a measured phase: this process, the receiver child, worker processes
 * the benchmark started, the PostgreSQL backends of the benchmark database (when the server is
 * local) and the whole machine (Linux `/proc/stat`). On a small or shared machine this tells whether a figure is limited by the
 * benchmark process, the receiver, the database, or something else running at the time.
 */

import { readFileSync } from "node:fs";
import { type EventLoopUtilization, performance } from "node:perf_hooks";

/** CPU use over one phase, in cores (1.0 = one core fully busy). */
export interface CpuUse {
  /** This process (the sender / dispatcher), all threads (V8's GC helpers included). */
  readonly bench: number;
  /**
   * Share of the time this process's event loop was busy (0..1, `performance.eventLoopUtilization`):
   * near 1 means the main thread is what limits the figure.
   */
  readonly eventLoop: number;
  /** The receiver child process. */
  readonly receiver: number;
  /** The worker processes started by the benchmark, together (read from `/proc`); undefined without any. */
  readonly workers?: number | undefined;
  /**
   * The PostgreSQL backends serving the benchmark database, when the server runs on this machine
   * (read from `/proc`); undefined otherwise.
   */
  readonly postgres: number | undefined;
  /** Every process on the machine, PostgreSQL included; undefined off Linux. */
  readonly machine: number | undefined;
  /** Cores available. */
  readonly cores: number;
}

interface Sample {
  readonly wall: number;
  readonly loop: EventLoopUtilization;
  readonly selfMicros: number;
  readonly receiverMicros: number;
  readonly workerTicks: ReadonlyMap<number, number> | undefined;
  readonly postgresTicks: ReadonlyMap<number, number> | undefined;
  readonly machineBusy: number | undefined;
  readonly machineTotal: number | undefined;
}

function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = ticks;
    const busy = user + nice + system + irq + softirq + steal;
    return { busy, total: busy + idle + iowait };
  } catch {
    return undefined;
  }
}

// Linux reports per-process CPU time in clock ticks of USER_HZ, which is 100 on every
// mainstream architecture.
const MICROS_PER_TICK = 10_000;

/** CPU ticks (user + system) of each process that still exists; unreadable ones are left out. */
function processTicks(pids: readonly number[]): Map<number, number> {
  const ticks = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // The command name (field 2) may contain spaces; the fields after it are positional.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks.set(pid, Number(fields[11]) + Number(fields[12]));
    } catch {
      // Gone, or not on this machine.
    }
  }
  return ticks;
}

/** What a {@link CpuProbe} reads besides this process. */
export interface CpuProbeSources {
  /** The receiver's cumulative CPU time (user + system), µs. */
  readonly receiverMicros: () => Promise<number>;
  /** Cores available on the machine. */
  readonly cores: number;
  /** Process ids of the PostgreSQL backends to account for. (Default: none) */
  readonly postgresPids?: () => Promise<number[]>;
  /** Process ids of the worker processes to account for. (Default: none) */
  readonly workerPids?: () => readonly number[];
}

/** Measures {@link CpuUse} between `start()` and `stop()`. */
export class CpuProbe {
  private begin: Sample | undefined;
  private last: CpuUse | undefined;

  constructor(private readonly sources: CpuProbeSources) {}

  private async sample(): Promise<Sample> {
    const receiverMicros = await this.sources.receiverMicros();
    const pids = this.sources.postgresPids ? await this.sources.postgresPids().catch(() => []) : undefined;
    const postgresTicks = pids ? processTicks(pids) : undefined;
    const workerTicks = this.sources.workerPids ? processTicks(this.sources.workerPids()) : undefined;
    const self = process.cpuUsage();
    const ticks = machineTicks();
    return {
      wall: performance.now(),
      loop: performance.eventLoopUtilization(),
      selfMicros: self.user + self.system,
      receiverMicros,
      workerTicks,
      postgresTicks,
      machineBusy: ticks?.busy,
      machineTotal: ticks?.total,
    };
  }

  /** Takes the first sample. */
  async start(): Promise<void> {
    this.begin = await this.sample();
  }

  /** Takes the second sample and computes the use in between. */
  async stop(): Promise<CpuUse> {
    const end = await this.sample();
    const begin = this.begin ?? end;
    const wallMicros = Math.max(1, (end.wall - begin.wall) * 1000);
    let machine: number | undefined;
    if (begin.machineBusy !== undefined && end.machineBusy !== undefined) {
      const total = (end.machineTotal ?? 0) - (begin.machineTotal ?? 0);
      machine = total > 0 ? ((end.machineBusy - begin.machineBusy) / total) * this.sources.cores : undefined;
    }
    const postgres = ticksBetween(begin.postgresTicks, end.postgresTicks, wallMicros);
    const workers = ticksBetween(begin.workerTicks, end.workerTicks, wallMicros);
    this.last = {
      bench: (end.selfMicros - begin.selfMicros) / wallMicros,
      eventLoop: performance.eventLoopUtilization(end.loop, begin.loop).utilization,
      receiver: (end.receiverMicros - begin.receiverMicros) / wallMicros,
      ...(workers === undefined ? {} : { workers }),
      postgres,
      machine,
      cores: this.sources.cores,
    };
    return this.last;
  }

  /** The use measured by the last `stop()`. */
  get result(): CpuUse | undefined {
    return this.last;
  }
}

/** Cores used by the processes of `end` between the two samples; undefined without any process. */
function ticksBetween(
  begin: ReadonlyMap<number, number> | undefined,
  end: ReadonlyMap<number, number> | undefined,
  wallMicros: number,
): number | undefined {
  if (!end || end.size === 0) return undefined;
  let ticks = 0;
  // A process that started during the phase counts from zero.
  for (const [pid, t] of end) ticks += t - (begin?.get(pid) ?? 0);
  return (ticks * MICROS_PER_TICK) / wallMicros;
}

/** The time-weighted mean of several measurements; undefined when there are none. */
export function mergeCpu(parts: readonly { use: CpuUse; seconds: number }[]): CpuUse | undefined {
  const first = parts[0];
  if (!first) return undefined;
  const total = parts.reduce((sum, p) => sum + p.seconds, 0) || 1;
  const mean = (pick: (u: CpuUse) => number | undefined): number | undefined => {
    if (parts.some((p) => pick(p.use) === undefined)) return undefined;
    return parts.reduce((sum, p) => sum + (pick(p.use) ?? 0) * p.seconds, 0) / total;
  };
  return {
    bench: mean((u) => u.bench) ?? 0,
    eventLoop: mean((u) => u.eventLoop) ?? 0,
    receiver: mean((u) => u.receiver) ?? 0,
    workers: mean((u) => u.workers),
    postgres: mean((u) => u.postgres),
    machine: mean((u) => u.machine),
    cores: first.use.cores,
  };
}

/**
 * Cores used by processes other than the bench, the receiver, the workers and the measured PostgreSQL
 * backends (other PostgreSQL processes such as the WAL writer included); undefined off Linux.
 */
export function otherCpu(use: CpuUse): number | undefined {
  if (use.machine === undefined) return undefined;
  return Math.max(0, use.machine - use.bench - use.receiver - (use.workers ?? 0) - (use.postgres ?? 0));
}

/** `bench 0.97 (event loop 95% busy), receiver 0.41, workers 1.10, postgres 0.50, other 0.05 (machine 1.93 of 2 cores)`. */
export function describeCpu(use: CpuUse): string {
  const parts = [
    `bench ${use.bench.toFixed(2)} (event loop ${Math.round(use.eventLoop * 100)}% busy)`,
    `receiver ${use.receiver.toFixed(2)}`,
  ];
  if (use.workers !== undefined) parts.push(`workers ${use.workers.toFixed(2)}`);
  if (use.postgres !== undefined) parts.push(`postgres ${use.postgres.toFixed(2)}`);
  const other = otherCpu(use);
  if (other !== undefined) parts.push(`other ${other.toFixed(2)}`);
  const machine =
    use.machine === undefined ? "" : ` (machine ${use.machine.toFixed(2)} of ${use.cores} cores)`;
  return parts.join(", ") + machine;
}
