/**
 * Worker processes, started the way an operator starts them: `fraiseql worker --config <file>`
 * from the built package, here `node dist/cli/main.js worker --config <file>` with
 * `FRAISEQL_CLI_ENTRY=1` (what `bin/fraiseql.js` runs once the package is built), after
 * `npm run build` has compiled the current sources, plus `bench/worker-guard.mjs`, which stops
 * the worker when the benchmark process goes away. Their configuration files live in a temporary
 * directory removed at the end of the run.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { epochMs, onCleanup } from "./resources.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = fileURLToPath(new URL("../dist/cli/main.js", import.meta.url));
const GUARD = fileURLToPath(new URL("./worker-guard.mjs", import.meta.url));
let built = false;

/** Compiles the sources into `dist/` (about a second), once per run, so workers run the current code. */
export function buildPackage(): void {
  if (built) return;
  execFileSync("npm", ["run", "--silent", "build"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  built = true;
}
/** Output kept per worker, for error messages. */
const OUTPUT_TAIL = 16_384;

/** A started worker process. */
export interface WorkerProcess {
  readonly pid: number;
  /** When it was spawned, ms since the epoch. */
  readonly spawnedAt: number;
  /** Resolves with the time (ms since the epoch) it reported that its dispatcher runs; rejects if it exits first. */
  readonly ready: Promise<number>;
  /** Resolves with the exit code, or the signal that ended it. */
  readonly exited: Promise<number | string>;
  /** The last 16 KiB of its standard output and error. */
  output(): string;
  /** Sends a signal (SIGKILL to simulate a crash). */
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM (it finishes in-flight deliveries and gives back its leases), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | string>;
  /**
   * SIGSTOP: an idle worker started ahead of its figure uses no CPU while others are measured
   * (running, it would poll its database every poll interval).
   */
  pause(): void;
  /** SIGCONT after {@link WorkerProcess.pause}. */
  resume(): void;
}

let pauseWatcher: ((pid: number, paused: boolean) => void) | undefined;

/**
 * Registers who to tell when a worker is stopped (SIGSTOP) or continued: the receiver child, which
 * continues stopped workers if this process dies without cleaning up. (Default: nobody)
 */
export function watchPaused(watcher: (pid: number, paused: boolean) => void): void {
  pauseWatcher = watcher;
}

/** Spawns `fraiseql worker --config <configPath>`; it is stopped at the end of the run at the latest. */
export function spawnWorker(configPath: string): WorkerProcess {
  buildPackage();
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", GUARD, CLI, "worker", "--config", configPath],
    {
      env: { ...process.env, FRAISEQL_CLI_ENTRY: "1" },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    },
  );
  const spawnedAt = epochMs();
  let output = "";
  let readyAt: ((at: number) => void) | undefined;
  const onData = (data: Buffer) => {
    output = (output + data.toString("utf8")).slice(-OUTPUT_TAIL);
    // serve.ts prints this line once the dispatcher has started.
    if (readyAt && / running \(/.test(output)) {
      readyAt(epochMs());
      readyAt = undefined;
    }
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1));
  });
  const ready = new Promise<number>((resolve, reject) => {
    readyAt = resolve;
    void exited.then((how) =>
      reject(new Error(`worker ${child.pid} exited (${how}) before running:\n${output.slice(-2000)}`)),
    );
  });
  ready.catch(() => {});
  // The guard's IPC channel carries no messages; it must not keep this process alive.
  child.channel?.unref();
  child.on("error", () => {});
  const stop = async (graceMs = 10_000): Promise<number | string> => {
    if (child.exitCode === null && child.signalCode === null) {
      // A paused process would not act on SIGTERM before SIGCONT.
      child.kill("SIGCONT");
      if (child.pid) pauseWatcher?.(child.pid, false);
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  };
  const untrack = onCleanup(async () => {
    await stop(5_000);
  });
  void exited.then(() => {
    if (child.pid) pauseWatcher?.(child.pid, false);
    return untrack();
  });
  return {
    pid: child.pid ?? 0,
    spawnedAt,
    ready,
    exited,
    output: () => output,
    kill: (signal) => {
      child.kill(signal);
    },
    stop,
    pause: () => {
      if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
      pauseWatcher?.(child.pid, true);
      child.kill("SIGSTOP");
    },
    resume: () => {
      if (!child.pid) return;
      child.kill("SIGCONT");
      pauseWatcher?.(child.pid, false);
    },
  };
}

let configDir: Promise<string> | undefined;

/** Writes a worker configuration file into the run's temporary directory; returns its path. */
export async function writeConfig(name: string, text: string): Promise<string> {
  if (!configDir) {
    configDir = mkdtemp(join(tmpdir(), "fraiseql-bench-"));
    const dir = await configDir;
    onCleanup(() => rm(dir, { recursive: true, force: true }));
  }
  const path = join(await configDir, `${name}.toml`);
  await writeFile(path, text);
  return path;
}

/** Resident set size of a process, bytes (`VmRSS` of `/proc/<pid>/status`); undefined when unreadable. */
export function residentBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Stops every worker (SIGTERM, then SIGKILL after `graceMs`) and checks that each exited with 0. */
export async function stopAll(workers: readonly WorkerProcess[], graceMs = 10_000): Promise<void> {
  const results = await Promise.all(workers.map((w) => w.stop(graceMs)));
  results.forEach((how, i) => {
    if (how !== 0) {
      throw new Error(`worker ${workers[i]?.pid} exited with ${how}:\n${workers[i]?.output().slice(-2000)}`);
    }
  });
}

/** A figure prepared ahead: its database exists and its worker processes are starting. */
export interface PreparedFigure<R> {
  /** Resolves once every worker runs (SIGSTOPped when prepared with `pause`). */
  readonly ready: Promise<void>;
  /** Measures (resuming paused workers first), then stops the workers and drops the database. */
  run(): Promise<R>;
}

/** Workers started by {@link startFigureWorkers}. */
export interface FigureWorkers {
  /** Their configuration file (a later worker of the figure may use it too). */
  readonly path: string;
  readonly workers: readonly WorkerProcess[];
  /** Resolves once every worker runs, paused (SIGSTOP) when asked to. */
  readonly ready: Promise<void>;
}

/**
 * Writes a figure's worker configuration (`name`, `toml`) and spawns `count` workers on it. If
 * that fails, the figure's database is closed (`closeFigure`) before the error is thrown. With
 * `pause`, each worker is stopped once it runs, so that figures prepared together start their
 * processes together (using both cores) and wait without polling while the others are measured.
 */
export async function startFigureWorkers(
  name: string,
  toml: string,
  options: { count?: number; pause?: boolean | undefined; closeFigure: () => Promise<void> },
): Promise<FigureWorkers> {
  const workers: WorkerProcess[] = [];
  let path: string;
  try {
    path = await writeConfig(name, toml);
    for (let i = 0; i < (options.count ?? 1); i++) workers.push(spawnWorker(path));
  } catch (err) {
    await Promise.all(workers.map((w) => w.stop(5_000)));
    await options.closeFigure();
    throw err;
  }
  const ready = Promise.all(
    workers.map(async (w) => {
      await w.ready;
      if (options.pause) w.pause();
    }),
  ).then(() => {});
  ready.catch(() => {});
  return { path, workers, ready };
}
