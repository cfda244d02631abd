/**
 * `npm run bench`: measures the pipeline against baselines taken in the same run, prints a table
 * and writes `bench/results/<YYYY-MM-DD>.json` (`<YYYY-MM-DD>.quick.json` for `--quick`; a run
 * with `--only` adds the figures' names: `<YYYY-MM-DD>.memory.json`).
 *
 * Figures (names for `--only`): `raw` (raw undici and HttpSender POST), `drain` (in-process
 * drain), `insert` (INSERT with and without the capture trigger), `drain-scaling` (1, 2 and 4
 * worker processes), `batching` (a batched action against an unbatched one), `latency` (commit
 * to receipt at a steady rate, two poll intervals), `recovery` (SIGKILLed worker, lease expiry),
 * `dlq-replay` (rate-limited, delayed replay of dead letters) and `memory` (worker RSS over a
 * large backlog; only with `--memory` or `--only=memory`, it takes minutes).
 *
 * Options (argv, or the environment variable in brackets):
 * - `--quick` (`BENCH_QUICK=1`): a smoke run of about half a minute, for CI.
 * - `--pglite` (`BENCH_PGLITE=1`): also drain on the embedded PGlite.
 * - `--n=N` (`BENCH_N`): requests per HTTP figure and deliveries of the in-process drain.
 *   (Default: 10000; quick: 1000; the PGlite drain takes at most 5000, quick 500). Each
 *   in-process drain follows an untimed one on the same database, reported as its cold start:
 *   a tenth of its size, at least 1000 (quick: 200).
 * - `--queued=N` (`BENCH_QUEUED`): deliveries of the in-process drain of queued (routed, pending)
 *   deliveries, the issue's drain figure, on PostgreSQL. (Default: 100000; quick: 2000)
 * - `--seconds=S` (`BENCH_SECONDS`): measured time per table of the insert figure. (Default: 5;
 *   quick: 1)
 * - `--events=N` (`BENCH_EVENTS`): events of the drain-scaling and batching drains. (Default:
 *   20000; quick: 2000)
 * - `--latency-rate=R` (`BENCH_LATENCY_RATE`): INSERTs per second of the latency figure.
 *   (Default: 1000; quick: 200)
 * - `--latency-seconds=S` (`BENCH_LATENCY_SECONDS`): its measured time per poll interval.
 *   (Default: 30; quick: 3)
 * - `--dlq-letters=N` (`BENCH_DLQ_LETTERS`): dead letters replayed. (Default: 10000; quick: 1000)
 * - `--memory` (`BENCH_MEMORY=1`): adds the memory figure to the run.
 * - `--memory-n=N` (`BENCH_MEMORY_N`): its pending deliveries. (Default: 1000000)
 * - `--memory-minutes=M` (`BENCH_MEMORY_MINUTES`): its drain stops after this long and reports
 *   how far it got. (Default: 10)
 * - `--only=a,b` (`BENCH_ONLY`): run only these figures; the raw POST baseline runs when a
 *   throughput figure (raw, drain, drain-scaling) is selected. (Default: all but memory)
 * - `--no-write`: print, do not write the results file.
 *
 * The database server is `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`, else
 * `postgres://postgres@127.0.0.1:5432/test`; fresh `fraiseql_bench_<random>` databases are
 * created on it and dropped at the end. With no server reachable the in-process figures run on
 * PGlite, the figures that need worker processes sharing a database are skipped, and the output
 * says so.
 */

import { mkdir, readFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Database } from "../src/db/driver.js";
import { openPostgres } from "../src/db/pg.js";
import { openPglite } from "../src/db/pglite.js";
import { CpuProbe, type CpuUse, describeCpu, mergeCpu, otherCpu } from "./cpu.js";
import { backendPids, connectServer, type DatabaseServer, redactUrl } from "./database.js";
import { drainRate, instantSender } from "./drain.js";
import type { Baseline, Figure } from "./figure.js";
import { insertRates } from "./insert.js";
import { type PreparedLatency, prepareLatency } from "./latency.js";
import { measureMemory } from "./memory.js";
import { type RateResult, rawPostRate, senderPostRate } from "./post.js";
import { type Receiver, startReceiver } from "./receiver-control.js";
import { type PreparedRecovery, prepareRecovery } from "./recovery.js";
import { type PreparedReplay, prepareReplay } from "./replay.js";
import {
  cleanUp,
  log,
  number,
  numberOption,
  onCleanup,
  runMain,
  UsageError,
  writeFileAtomically,
} from "./resources.js";
import {
  type PreparedDrain,
  prepareWorkerDrain,
  type WorkerDrainOptions,
  type WorkerDrainResult,
} from "./scaling.js";
import { watchPaused } from "./workers.js";
import { emptyDrainTables, prepareDatabase } from "./workload.js";

const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test";
const FIGURES = [
  "raw",
  "drain",
  "insert",
  "drain-scaling",
  "batching",
  "latency",
  "recovery",
  "dlq-replay",
  "memory",
] as const;
type FigureName = (typeof FIGURES)[number];
/** Figures that need worker processes sharing one PostgreSQL database. */
const SERVER_ONLY: readonly FigureName[] = [
  "drain-scaling",
  "batching",
  "latency",
  "recovery",
  "dlq-replay",
  "memory",
];

/** The run's settings, resolved from argv and the environment. */
interface Settings {
  readonly quick: boolean;
  readonly pglite: boolean;
  readonly n: number;
  readonly pgliteN: number;
  readonly queued: number;
  readonly insertSeconds: number;
  readonly events: number;
  readonly latencyRate: number;
  readonly latencySeconds: number;
  readonly dlqLetters: number;
  readonly memoryDeliveries: number;
  readonly memoryMinutes: number;
  readonly only: ReadonlySet<FigureName>;
  /** Whether `--only` chose the figures. */
  readonly partial: boolean;
  readonly write: boolean;
  readonly serverUrl: string;
}

function runs(settings: Settings, name: FigureName): boolean {
  return settings.only.has(name);
}

function flag(value: boolean | undefined, env: string | undefined): boolean {
  return value === true || (env !== undefined && env !== "" && env !== "0" && env !== "false");
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" },
      pglite: { type: "boolean" },
      n: { type: "string" },
      queued: { type: "string" },
      seconds: { type: "string" },
      events: { type: "string" },
      "latency-rate": { type: "string" },
      "latency-seconds": { type: "string" },
      "dlq-letters": { type: "string" },
      memory: { type: "boolean" },
      "memory-n": { type: "string" },
      "memory-minutes": { type: "string" },
      only: { type: "string" },
      "no-write": { type: "boolean" },
    },
    strict: true,
  });
  const env = process.env;
  const quick = flag(values.quick, env.BENCH_QUICK);
  const n = Math.round(numberOption(values.n ?? env.BENCH_N, quick ? 1000 : 10_000, "--n"));
  const onlyText = values.only ?? env.BENCH_ONLY;
  const only = new Set<FigureName>();
  const defaults = FIGURES.filter((f) => f !== "memory");
  for (const name of onlyText === undefined ? defaults : onlyText.split(",")) {
    const trimmed = name.trim();
    if (!FIGURES.includes(trimmed as FigureName)) {
      throw new UsageError(`--only takes ${FIGURES.join(", ")}; got ${trimmed}`);
    }
    only.add(trimmed as FigureName);
  }
  if (flag(values.memory, env.BENCH_MEMORY)) only.add("memory");
  const int = (text: string | undefined, fallback: number, name: string) =>
    Math.round(numberOption(text, fallback, name));
  return {
    quick,
    pglite: flag(values.pglite, env.BENCH_PGLITE),
    n,
    // PGlite runs every statement through one in-process connection; a smaller drain keeps the
    // run short and still shows its rate.
    pgliteN: Math.min(n, quick ? 500 : 5000),
    queued: int(values.queued ?? env.BENCH_QUEUED, quick ? 2000 : 100_000, "--queued"),
    insertSeconds: numberOption(values.seconds ?? env.BENCH_SECONDS, quick ? 1 : 5, "--seconds"),
    events: int(values.events ?? env.BENCH_EVENTS, quick ? 2000 : 20_000, "--events"),
    latencyRate: numberOption(
      values["latency-rate"] ?? env.BENCH_LATENCY_RATE,
      quick ? 200 : 1000,
      "--latency-rate",
    ),
    latencySeconds: numberOption(
      values["latency-seconds"] ?? env.BENCH_LATENCY_SECONDS,
      quick ? 3 : 30,
      "--latency-seconds",
    ),
    dlqLetters: int(values["dlq-letters"] ?? env.BENCH_DLQ_LETTERS, quick ? 1000 : 10_000, "--dlq-letters"),
    memoryDeliveries: int(values["memory-n"] ?? env.BENCH_MEMORY_N, 1_000_000, "--memory-n"),
    memoryMinutes: numberOption(values["memory-minutes"] ?? env.BENCH_MEMORY_MINUTES, 10, "--memory-minutes"),
    only,
    partial: onlyText !== undefined,
    write: values["no-write"] !== true,
    serverUrl: env.BENCH_DATABASE_URL || env.TEST_DATABASE_URL || DEFAULT_URL,
  };
}

// ---------------------------------------------------------------------------------------------
// Resources: everything opened is closed in reverse order, on success, error or Ctrl-C
// (bench/resources.ts).

const tracked = new Map<Database, () => Promise<void>>();

async function openTracked<T extends Database>(open: Promise<T>): Promise<T> {
  const db = await open;
  tracked.set(
    db,
    onCleanup(() => db.close()),
  );
  return db;
}

async function closeTracked(db: Database): Promise<void> {
  const close = tracked.get(db);
  tracked.delete(db);
  await (close ? close() : db.close());
}

// ---------------------------------------------------------------------------------------------
// Output.

function show(value: number, unit: string): string {
  if (!Number.isFinite(value)) return `- ${unit}`;
  // Small values (seconds, calls per event) need their decimals; rates do not.
  const digits = Math.abs(value) < 10 ? 2 : Math.abs(value) < 100 ? 1 : 0;
  return `${value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })} ${unit}`;
}

function ratioOf(figure: Figure): number | undefined {
  return figure.baseline ? figure.value / figure.baseline.value : undefined;
}

function table(figures: readonly Figure[]): string {
  const rows = [
    ["figure", "value", "baseline", "ratio"],
    ...figures.map((f) => {
      const ratio = ratioOf(f);
      return [
        f.label,
        f.display ?? show(f.value, f.unit),
        f.baseline ? (f.baseline.display ?? show(f.baseline.value, f.baseline.unit)) : "-",
        ratio === undefined || !Number.isFinite(ratio) ? "-" : ratio.toFixed(2),
      ];
    }),
  ];
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c]!.length)) + 3);
  return rows.map((r) => r.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell)).join("")).join("\n");
}

async function pgliteVersion(): Promise<string> {
  try {
    const text = await readFile(
      new URL("../node_modules/@electric-sql/pglite/package.json", import.meta.url),
      "utf8",
    );
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

const MiB = 2 ** 20;

function ms(value: number): string {
  return value.toFixed(value < 10 ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------
// The figures run by worker processes (PostgreSQL only).

/**
 * The workers' configuration of the drain-scaling figure, which is also the unbatched side of
 * the batching figure: the order inside an `orders` array, the body shape a batched action sends.
 */
const SCALING_CONFIG = { observer: "orders-array", pollInterval: "10ms" } as const;
const BATCH = { size: 50, timeout: "1s" } as const;

/**
 * Creates the databases of the drain-scaling and batching figures and spawns their workers; each
 * worker is paused (SIGSTOP) once it runs, and each drain resumes its own when it is measured.
 * Returns before the workers run: wait for each drain's `ready`.
 */
async function prepareDrains(
  settings: Settings,
  server: DatabaseServer,
  receiver: Receiver,
): Promise<Map<string, PreparedDrain>> {
  const plan: [string, number, WorkerDrainOptions["config"]][] = [];
  if (runs(settings, "drain-scaling")) {
    for (const workers of [1, 2, 4]) plan.push([`scaling-${workers}`, workers, SCALING_CONFIG]);
  } else if (runs(settings, "batching")) {
    plan.push(["batch-off", 1, SCALING_CONFIG]);
  }
  if (runs(settings, "batching")) plan.push(["batch-on", 1, { ...SCALING_CONFIG, batch: BATCH }]);
  const prepared = await Promise.all(
    plan.map(async ([name, workers, config]) => {
      const options = { server, receiver, workers, events: settings.events, config, name, pause: true };
      return [name, await prepareWorkerDrain(options)] as const;
    }),
  );
  return new Map(prepared);
}

/** Drain scaling: 1, 2 and 4 worker processes, each on its own fresh database. */
async function drainScaling(
  settings: Settings,
  drains: ReadonlyMap<string, PreparedDrain>,
): Promise<{ figures: ((raw: Baseline) => Figure)[]; single: WorkerDrainResult | undefined }> {
  const figures: ((raw: Baseline) => Figure)[] = [];
  let single: WorkerDrainResult | undefined;
  for (const workers of [1, 2, 4]) {
    const drain = drains.get(`scaling-${workers}`);
    if (!drain) continue;
    log(`drain scaling: ${number.format(settings.events)} events, ${workers} worker process(es)`);
    const result = await drain.run();
    single ??= result;
    const { cpu, ...details } = result;
    const label = `drain ${number.format(settings.events)}, ${workers} worker process${workers > 1 ? "es" : ""}`;
    const one: Baseline = { id: "drain_workers_1", value: single.perSecond, unit: "/s" };
    figures.push((raw) => ({
      id: `drain_workers_${workers}`,
      label,
      value: result.perSecond,
      unit: "/s",
      baseline: workers === 1 ? raw : one,
      cpu,
      details: {
        ...details,
        pollInterval: "10ms",
        clock: "from the INSERT's commit, workers already running",
      },
    }));
  }
  return { figures, single };
}

/**
 * Batching: the same events through an action with `batch = { size = 50, timeout = "1s" }` and
 * without. The unbatched side is the drain-scaling figure's single worker when that ran.
 */
async function batching(
  settings: Settings,
  drains: ReadonlyMap<string, PreparedDrain>,
  unbatched: WorkerDrainResult | undefined,
): Promise<Figure[]> {
  const run = async (name: string) => {
    const drain = drains.get(name);
    if (!drain) throw new Error(`no prepared drain ${name}`);
    const mode = name === "batch-on" ? "on (size 50)" : "off";
    log(`batching ${mode}: ${number.format(settings.events)} events, 1 worker process`);
    return drain.run();
  };
  const off = unbatched ?? (await run("batch-off"));
  const on = await run("batch-on");
  for (const result of [off, on]) {
    if (result.eventsReceived !== result.events) {
      throw new Error(`batching: the receiver counted ${result.eventsReceived} events of ${result.events}`);
    }
  }
  const events = number.format(settings.events);
  const offBaseline: Baseline = { id: "batch_off", value: off.perSecond, unit: "/s" };
  const offCalls = off.requests / off.events;
  const split = ({ cpu, ...details }: WorkerDrainResult) => ({ cpu, details });
  return [
    {
      id: "batch_off",
      label: `drain ${events}, no batch (1 worker)`,
      value: off.perSecond,
      unit: "/s",
      cpu: off.cpu,
      details: unbatched ? { sameRunAs: "drain_workers_1" } : split(off).details,
    },
    {
      id: "batch_on",
      label: `drain ${events}, batch 50 (1 worker)`,
      value: on.perSecond,
      unit: "/s",
      baseline: offBaseline,
      ...split(on),
    },
    {
      id: "batch_calls_per_event",
      label: "  HTTP calls per event, batch 50",
      value: on.requests / on.events,
      unit: "calls",
      display: `${(on.requests / on.events).toFixed(3)} calls`,
      baseline: {
        id: "batch_off_calls_per_event",
        value: offCalls,
        unit: "calls",
        display: `${offCalls.toFixed(3)} calls`,
      },
      details: { requestsOn: on.requests, requestsOff: off.requests, events: on.events },
    },
  ];
}

/** The later worker figures, their databases created and first workers started ahead. */
interface LaterFigures {
  readonly latency: readonly { pollInterval: string | undefined; run: PreparedLatency }[];
  readonly recovery: { run: PreparedRecovery; leaseSeconds: number; deliveries: number } | undefined;
  readonly replay: PreparedReplay | undefined;
  /** Resolves once every first worker runs. */
  readonly ready: Promise<void>;
}

const REPLAY_LIMIT = { maxPerSecond: 1000, burst: 100 } as const;
const REPLAY_DELAY_MS = 2000;

/**
 * Creates the databases of the latency, recovery and DLQ replay figures and spawns their first
 * workers, each paused (SIGSTOP) once it runs until its turn. Returns before the workers run:
 * wait for `ready`. The recovery figure's second worker is started during the figure: its
 * start-up is measured.
 */
async function prepareLater(
  settings: Settings,
  server: DatabaseServer,
  receiver: Receiver,
): Promise<LaterFigures> {
  const polls = runs(settings, "latency") ? [undefined, "5ms"] : [];
  const latencyRuns = polls.map(async (pollInterval) => {
    const run = await prepareLatency({
      server,
      receiver,
      rate: settings.latencyRate,
      seconds: settings.latencySeconds,
      warmupSeconds: settings.quick ? 0.5 : 2,
      pollInterval,
      name: `latency-${pollInterval ?? "default"}`,
      pause: true,
    });
    return { pollInterval, run };
  });
  // The quick run uses a 1 s lease and 600 deliveries: with the default 5 s lease and 2,000 the
  // figure alone takes about 15 s.
  const lease = settings.quick ? "1s" : undefined;
  const deliveries = settings.quick ? 600 : 2000;
  const recoveryRun = runs(settings, "recovery")
    ? prepareRecovery({
        server,
        receiver,
        deliveries,
        answerDelayMs: 200,
        killAfter: deliveries * 0.3,
        lease,
        pause: true,
      })
    : undefined;
  const replayRun = runs(settings, "dlq-replay")
    ? prepareReplay({
        server,
        receiver,
        letters: settings.dlqLetters,
        delayMs: REPLAY_DELAY_MS,
        ...REPLAY_LIMIT,
        pause: true,
      })
    : undefined;
  const latency = await Promise.all(latencyRuns);
  const replay = await replayRun;
  const recovery: LaterFigures["recovery"] = recoveryRun
    ? { run: await recoveryRun, leaseSeconds: lease === undefined ? 5 : 1, deliveries }
    : undefined;
  const all = [
    ...latency.map((l) => l.run),
    ...(recovery ? [recovery.run] : []),
    ...(replay ? [replay] : []),
  ];
  return { latency, recovery, replay, ready: Promise.all(all.map((p) => p.ready)).then(() => {}) };
}

/** Latency at a steady rate, with the default poll interval and with 5ms. */
async function latency(settings: Settings, later: LaterFigures): Promise<Figure[]> {
  const figures: Figure[] = [];
  let slow: Baseline | undefined;
  const rate = number.format(settings.latencyRate);
  for (const { pollInterval, run } of later.latency) {
    const poll = pollInterval ?? "200ms";
    log(`latency: ${rate} INSERTs/s for ${settings.latencySeconds} s, 1 worker process, poll ${poll}`);
    const result = await run.run();
    const { cpu, ...details } = result;
    const id = `latency_poll_${poll}`;
    figures.push({
      id,
      label: `latency p50/p90/p99/max, poll ${poll}`,
      value: result.p50,
      unit: "ms",
      display: `${ms(result.p50)} / ${ms(result.p90)} / ${ms(result.p99)} / ${ms(result.max)} ms`,
      ...(slow ? { baseline: slow } : {}),
      cpu,
      details: {
        ...details,
        worker: "one worker process",
        measuredFrom: "the row's clock_timestamp() to receipt",
      },
    });
    figures.push({
      id: `${id}_insert`,
      label: `  INSERT round trip p50/p99, ${rate}/s`,
      value: result.insertP50,
      unit: "ms",
      display: `${ms(result.insertP50)} / ${ms(result.insertP99)} ms`,
      details: {
        note: "statement and commit as the inserting loop saw them; the commit is inside the latency above",
      },
    });
    slow ??= { id, value: result.p50, unit: "ms", display: `${ms(result.p50)} ms (p50)` };
  }
  return figures;
}

async function recovery(later: LaterFigures): Promise<Figure[]> {
  if (!later.recovery) return [];
  const { run, leaseSeconds, deliveries } = later.recovery;
  log(
    `recovery: ${number.format(deliveries)} deliveries to a receiver answering after 200 ms, SIGKILL, lease ${leaseSeconds}s`,
  );
  const result = await run.run();
  return [
    {
      id: "recovery",
      label: `recovery after SIGKILL (lease ${leaseSeconds}s)`,
      value: result.recoverySeconds,
      unit: "s",
      baseline: { id: "lease", value: leaseSeconds, unit: "s", display: `${leaseSeconds} s lease` },
      details: {
        ...result,
        figure: "from the new worker's spawn to the receipt of the last re-sent in-flight delivery",
      },
    },
  ];
}

async function dlqReplay(settings: Settings, later: LaterFigures): Promise<Figure[]> {
  if (!later.replay) return [];
  const letters = number.format(settings.dlqLetters);
  log(`DLQ replay: ${letters} dead letters, delay 2 s, max_per_second 1000, burst 100`);
  const result = await later.replay.run();
  const { cpu, ...details } = result;
  return [
    {
      id: "dlq_replay_call",
      label: `DLQ replay call (${letters} letters)`,
      value: result.callSeconds,
      unit: "s",
      details,
    },
    {
      id: "dlq_replay_delivered",
      label: "  replay delivered (delay 2 s, 1,000/s)",
      value: result.deliveredSeconds,
      unit: "s",
      baseline: { id: "dlq_replay_ideal", value: result.idealSeconds, unit: "s (ideal)" },
      cpu,
    },
    {
      id: "dlq_replay_max_rate",
      label: "  max rate over any 1 s window",
      value: result.maxPerSecondWindow,
      unit: "/s",
      baseline: {
        id: "dlq_rate_limit",
        value: REPLAY_LIMIT.maxPerSecond + REPLAY_LIMIT.burst,
        unit: "/s (rate+burst)",
      },
    },
    {
      id: "dlq_replay_first",
      label: `  first arrival (${result.beforeDelay} before the delay)`,
      value: result.firstArrivalSeconds,
      unit: "s",
      baseline: { id: "dlq_replay_delay", value: REPLAY_DELAY_MS / 1000, unit: "s (delay)" },
    },
  ];
}

async function memory(settings: Settings, server: DatabaseServer, receiver: Receiver): Promise<Figure[]> {
  const n = number.format(settings.memoryDeliveries);
  log(
    `memory: ${n} pending deliveries, one worker process, RSS every second (stops after ${settings.memoryMinutes} min)`,
  );
  const result = await measureMemory({
    server,
    receiver,
    deliveries: settings.memoryDeliveries,
    maxDrainMs: settings.memoryMinutes * 60_000,
  });
  const mib = (bytes: number | undefined) => (bytes === undefined ? "-" : (bytes / MiB).toFixed(0));
  const start: Baseline = { id: "memory_rss_start", value: result.rssAtStart / MiB, unit: "MiB (at start)" };
  const { samples, cpu, ...details } = result;
  return [
    {
      id: "memory_rss_max",
      label: `worker RSS draining ${n}, max`,
      value: result.rssMax / MiB,
      unit: "MiB",
      baseline: start,
      details: { ...details, samples: samples.map((s) => [Math.round(s.seconds), s.rss, s.received]) },
    },
    {
      id: "memory_rss_progress",
      label: "  RSS at 10% / 50% / 90%",
      value: (result.rssAt90 ?? Number.NaN) / MiB,
      unit: "MiB",
      display: `${mib(result.rssAt10)} / ${mib(result.rssAt50)} / ${mib(result.rssAt90)} MiB`,
      baseline: start,
    },
    {
      id: "memory_drain",
      label: `  drain rate${result.completed ? "" : ` (stopped at ${number.format(result.received)})`}`,
      value: result.perSecond,
      unit: "/s",
      cpu,
    },
  ];
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const settings = readSettings();
  const started = performance.now();
  const figures: Figure[] = [];
  const notes: string[] = [];
  const runs = (name: FigureName) => settings.only.has(name);

  const receiver = await startReceiver();
  watchPaused((pid, paused) => receiver.notePaused(pid, paused));
  const cores = availableParallelism();
  const receiverMicros = () => receiver.cpuMicros();
  const cpu = () => new CpuProbe({ receiverMicros, cores });
  // With a database whose server may be local, the probe also counts that database's backends.
  const cpuWith = (db: Database) => () =>
    new CpuProbe({
      receiverMicros,
      cores,
      ...(db.kind === "postgresql" ? { postgresPids: () => backendPids(db) } : {}),
    });
  const server = await connectServer(settings.serverUrl);
  if (!server) {
    notes.push(`no PostgreSQL reachable at ${redactUrl(settings.serverUrl)}: every figure ran on PGlite`);
    const skipped = SERVER_ONLY.filter(runs);
    if (skipped.length > 0) {
      notes.push(
        `skipped without a PostgreSQL server (worker processes share one database): ${skipped.join(", ")}`,
      );
    }
  }
  // The in-process drain and the insert figure share one database, as they always have.
  const needsMain = runs("drain") || runs("insert");
  const mainDb = server && needsMain ? await server.create() : undefined;
  const machine: Record<string, unknown> = {
    cpu: cpus()[0]?.model ?? "unknown",
    cores,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    postgresql: server?.version ?? null,
    ...(server ? { pgSettings: server.settings } : {}),
    pglite: await pgliteVersion(),
  };

  // (1) The baseline of every throughput figure: each is a ratio to it. It is measured first and,
  // when other HTTP figures follow, once more after them; their mean is the baseline, so that
  // load coming and going on the machine does not favour either side of a ratio.
  // Enough untimed requests for undici's and the signing code's JIT to settle.
  const warmup = settings.quick ? 500 : 2000;
  const measureRaw = async (when: string): Promise<RateResult> => {
    log(
      `raw undici POST (${when}): ${number.format(settings.n)} signed requests, 64 connections, 128 in flight`,
    );
    await receiver.count(true);
    const result = await rawPostRate({ receiverUrl: receiver.url, requests: settings.n, warmup, cpu });
    const received = await receiver.count(true);
    if (received < settings.n) throw new Error(`receiver counted ${received} of ${settings.n} requests`);
    return result;
  };
  const needsRaw = runs("raw") || runs("drain") || (runs("drain-scaling") && server !== undefined);
  const rawRuns = needsRaw ? [await measureRaw("before")] : [];
  const httpFigures: ((baseline: Baseline) => Figure)[] = [];

  if (runs("raw")) {
    log("HttpSender POST: the same requests through createUndiciSender");
    const viaSender = await senderPostRate({ receiverUrl: receiver.url, requests: settings.n, warmup, cpu });
    await receiver.count(true);
    httpFigures.push((baseline) => ({
      id: "sender_post",
      label: "HttpSender POST (signed)",
      value: viaSender.perSecond,
      unit: "req/s",
      baseline,
      cpu: viaSender.cpu,
      details: { requests: viaSender.count, seconds: viaSender.seconds, connections: 64, concurrency: 128 },
    }));
  }

  const drains: { kind: "pg" | "pglite"; open: () => Promise<Database>; n: number }[] = [];
  if (runs("drain")) {
    if (mainDb) drains.push({ kind: "pg", open: () => openTracked(openPostgres(mainDb.url)), n: settings.n });
    if (!mainDb || settings.pglite) {
      drains.push({ kind: "pglite", open: () => openTracked(openPglite()), n: settings.pgliteN });
    }
  }
  for (const drain of drains) {
    log(`drain on ${drain.kind}: ${number.format(drain.n)} deliveries waiting in the outbox`);
    const db = await drain.open();
    await prepareDatabase(db, receiver.url);
    // The first drain after start pays for compiling the hot paths (V8, and PGlite's WebAssembly);
    // it is reported as the cold start, and the timed drain starts from the same empty tables.
    const cold = await drainRate({
      db,
      receiverUrl: receiver.url,
      deliveries: settings.quick ? 200 : Math.max(1000, Math.round(drain.n / 10)),
    });
    await receiver.count(true);
    await emptyDrainTables(db);
    const result = await drainRate({ db, receiverUrl: receiver.url, deliveries: drain.n, cpu: cpuWith(db) });
    const received = await receiver.count(true);
    await closeTracked(db);
    const { cpu: drainCpu, ...details } = result;
    httpFigures.push((baseline) => ({
      id: `drain_${drain.kind}`,
      label: `drain ${number.format(drain.n)} deliveries (${drain.kind})`,
      value: result.perSecond,
      unit: "/s",
      baseline,
      cpu: drainCpu,
      details: { ...details, requestsReceived: received },
    }));
    httpFigures.push(() => ({
      id: `route_${drain.kind}`,
      label: `  of which routing (${drain.kind})`,
      value: drain.n / result.routedSeconds,
      unit: "events/s",
      details: {
        events: drain.n,
        seconds: result.routedSeconds,
        note: "time until every event was routed; routing and sending share the loop",
      },
    }));
    httpFigures.push(() => ({
      id: `drain_cold_${drain.kind}`,
      label: `  cold: first ${number.format(cold.deliveries)} after start`,
      value: cold.perSecond,
      unit: "/s",
      details: {
        deliveries: cold.deliveries,
        seconds: cold.seconds,
        note: "an untimed drain before the timed one, on the same database: the hot paths are compiled here",
      },
    }));
  }
  if (runs("drain") && mainDb) {
    // The issue's drain figure: deliveries already queued (routed in SQL before the clock), so
    // the dispatcher claims, sends and settles them.
    log(`drain on pg: ${number.format(settings.queued)} deliveries queued (pending)`);
    const db = await openTracked(openPostgres(mainDb.url));
    await emptyDrainTables(db);
    const result = await drainRate({
      db,
      receiverUrl: receiver.url,
      deliveries: settings.queued,
      queued: true,
      cpu: cpuWith(db),
    });
    const received = await receiver.count(true);
    await closeTracked(db);
    const { cpu: queuedCpu, routedSeconds: _routed, ...details } = result;
    httpFigures.push((baseline) => ({
      id: "drain_queued_pg",
      label: `drain ${number.format(settings.queued)} queued deliveries (pg)`,
      value: result.perSecond,
      unit: "/s",
      baseline,
      cpu: queuedCpu,
      details: { ...details, requestsReceived: received },
    }));
    // The same drain with a sender that answers at once: what the pipeline costs besides HTTP,
    // the dispatcher's CPU and the database's per delivery.
    log(`drain on pg: ${number.format(settings.queued)} deliveries queued, no HTTP`);
    const bare = await openTracked(openPostgres(mainDb.url));
    await emptyDrainTables(bare);
    const noHttp = await drainRate({
      db: bare,
      receiverUrl: receiver.url,
      deliveries: settings.queued,
      queued: true,
      sender: instantSender(),
      cpu: cpuWith(bare),
    });
    await closeTracked(bare);
    const { cpu: bareCpu, routedSeconds: _bareRouted, ...bareDetails } = noHttp;
    const micros = (cores: number | undefined) =>
      cores === undefined ? undefined : Math.round((cores * noHttp.seconds * 1e7) / noHttp.deliveries) / 10;
    httpFigures.push(() => ({
      id: "drain_queued_no_http_pg",
      label: "  the same without HTTP",
      value: noHttp.perSecond,
      unit: "/s",
      baseline: { id: "drain_queued_pg", value: result.perSecond, unit: "/s" },
      cpu: bareCpu,
      details: {
        ...bareDetails,
        benchMicrosPerDelivery: micros(bareCpu?.bench),
        postgresMicrosPerDelivery: micros(bareCpu?.postgres),
        note: "a sender that answers 200 on the next turn of the event loop: claims, settles, rendering and signing only",
      },
    }));
  }

  // Every worker process the run needs (but the recovery figure's second) is started here, at
  // once: start-up, about 0.3 s of CPU per process, then uses both cores. Each is paused
  // (SIGSTOP) once it runs, until its figure continues it.
  let unbatched: WorkerDrainResult | undefined;
  const [drainsAhead, later] = await Promise.all([
    server && (runs("drain-scaling") || runs("batching"))
      ? prepareDrains(settings, server, receiver)
      : new Map<string, PreparedDrain>(),
    server && (runs("latency") || runs("recovery") || runs("dlq-replay"))
      ? prepareLater(settings, server, receiver)
      : undefined,
  ]);
  const ahead = [...[...drainsAhead.values()].map((d) => d.ready), ...(later ? [later.ready] : [])];
  if (ahead.length > 0) {
    log("starting the worker processes of the figures below, each paused until its turn");
    await Promise.all(ahead);
  }
  if (runs("drain-scaling")) {
    const scaling = await drainScaling(settings, drainsAhead);
    httpFigures.push(...scaling.figures);
    unbatched = scaling.single;
  }

  if (rawRuns.length > 0 && httpFigures.length > 0) rawRuns.push(await measureRaw("after"));
  if (rawRuns.length > 0) {
    const rawRate = rawRuns.reduce((sum, r) => sum + r.perSecond, 0) / rawRuns.length;
    const rawCpu = mergeCpu(rawRuns.flatMap((r) => (r.cpu ? [{ use: r.cpu, seconds: r.seconds }] : [])));
    figures.push({
      id: "raw_post",
      label: "raw undici POST (signed)",
      value: rawRate,
      unit: "req/s",
      cpu: rawCpu,
      details: {
        requests: settings.n,
        runs: rawRuns.map((r) => ({ perSecond: r.perSecond, seconds: r.seconds })),
        connections: 64,
        concurrency: 128,
      },
    });
    const rawBaseline: Baseline = { id: "raw_post", value: rawRate, unit: "req/s" };
    for (const build of httpFigures) figures.push(build(rawBaseline));
    const busy = Math.max(...rawRuns.map((r) => (r.cpu ? (otherCpu(r.cpu) ?? 0) : 0)));
    if (busy > 0.25) {
      notes.push(
        `other processes used up to ${busy.toFixed(2)} of ${cores} cores during the baseline: absolute figures ` +
          "are depressed and noisy, compare the ratios",
      );
    }
    if (rawRuns.length === 2) {
      const [before, after] = rawRuns as [RateResult, RateResult];
      const drift = Math.abs(before.perSecond - after.perSecond) / rawRate;
      if (drift > 0.2) {
        notes.push(
          `the baseline moved ${Math.round(drift * 100)}% between its two runs ` +
            `(${number.format(before.perSecond)} then ${number.format(after.perSecond)} req/s): the machine's load changed`,
        );
      }
    }
  }

  if (server && runs("batching")) figures.push(...(await batching(settings, drainsAhead, unbatched)));

  if (runs("insert")) {
    const kind = mainDb ? "pg" : "pglite";
    log(`insert: single-row INSERTs from 16 loops, ${settings.insertSeconds} s per table (${kind})`);
    // Its own pool of 16 connections (the pipeline's default is 10).
    const db = await openTracked(
      mainDb ? openPostgres(mainDb.url, { max: 16, applicationName: "fraiseql-bench" }) : openPglite(),
    );
    await prepareDatabase(db, receiver.url);
    const result = await insertRates({ db, seconds: settings.insertSeconds, cpu: cpuWith(db) });
    await closeTracked(db);
    if (!mainDb) notes.push("insert figure on PGlite: the 16 loops share its single in-process connection");
    if (!result.checkpointed) {
      notes.push("CHECKPOINT was not allowed; insert phases may include a checkpoint");
    }
    const { cpu: plainCpu, ...plain } = result.plain;
    const { cpu: observedCpu, ...observed } = result.observed;
    const baseline = { id: `insert_plain_${kind}`, value: plain.perSecond, unit: "rows/s" };
    figures.push({
      id: baseline.id,
      label: `INSERT, no trigger (${kind}, 16 conn)`,
      value: plain.perSecond,
      unit: "rows/s",
      cpu: plainCpu,
      details: plain,
    });
    figures.push({
      id: `insert_observed_${kind}`,
      label: `INSERT, capture trigger (${kind})`,
      value: observed.perSecond,
      unit: "rows/s",
      baseline,
      cpu: observedCpu,
      details: { ...observed, slices: result.slices, target: ">= 0.85 of the plain rate" },
    });
  }
  await mainDb?.drop();

  if (later) {
    figures.push(...(await latency(settings, later)));
    figures.push(...(await recovery(later)));
    const replay = await dlqReplay(settings, later);
    figures.push(...replay);
    const details = replay[0]?.details as
      | { beforeDelay?: number; unknownIds?: number; entriesLeft?: number }
      | undefined;
    if (details?.beforeDelay)
      notes.push(`DLQ replay: ${details.beforeDelay} requests arrived before the delay`);
    if (details?.unknownIds)
      notes.push(`DLQ replay: ${details.unknownIds} requests carried a new delivery id`);
    if (details?.entriesLeft)
      notes.push(`DLQ replay: ${details.entriesLeft} entries left in the DLQ after success`);
  }
  if (server && runs("memory")) figures.push(...(await memory(settings, server, receiver)));

  await cleanUp();
  const totalSeconds = (performance.now() - started) / 1000;
  // The baseline's note above covers the raw POST; the other figures get one each when the
  // machine was busy with something else while they ran.
  const busyDuring = figures.filter(
    (f) => f.id !== "raw_post" && f.cpu !== undefined && (otherCpu(f.cpu) ?? 0) > 0.25,
  );
  if (busyDuring.length > 0) {
    const list = busyDuring.map((f) => `${f.label.trim()} (${(otherCpu(f.cpu as CpuUse) ?? 0).toFixed(2)})`);
    notes.push(
      `other processes used more than 0.25 of ${cores} cores during: ${list.join(", ")}; ` +
        "those absolute figures are depressed and noisy",
    );
  }

  process.stdout.write(`\n${table(figures)}\n\nCPU during each timed part, in cores:\n`);
  for (const f of figures) {
    if (f.cpu) process.stdout.write(`  ${f.label.trim().padEnd(38)} ${describeCpu(f.cpu)}\n`);
  }
  const database = server ? `PostgreSQL ${machine.postgresql}` : "PGlite only";
  process.stdout.write(
    `\n${machine.cpu} x${cores}, node ${machine.node}, ${database}; ${totalSeconds.toFixed(1)} s in all\n`,
  );
  for (const note of notes) process.stdout.write(`note: ${note}\n`);

  if (settings.write) {
    const dir = fileURLToPath(new URL("./results/", import.meta.url));
    await mkdir(dir, { recursive: true });
    // A run of some figures only gets its own file, so it does not replace the day's full run.
    const subset = settings.partial ? `.${[...settings.only].join("+")}` : "";
    const file = `${dir}${today()}${settings.quick ? ".quick" : ""}${subset}.json`;
    const results = {
      date: new Date().toISOString(),
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
      mode: settings.quick ? "quick" : "full",
      seconds: totalSeconds,
      machine,
      settings: {
        n: settings.n,
        pgliteN: drains.some((d) => d.kind === "pglite") ? settings.pgliteN : null,
        insertSeconds: settings.insertSeconds,
        events: settings.events,
        latencyRate: settings.latencyRate,
        latencySeconds: settings.latencySeconds,
        dlqLetters: settings.dlqLetters,
        memoryDeliveries: runs("memory") ? settings.memoryDeliveries : null,
        memoryMinutes: runs("memory") ? settings.memoryMinutes : null,
        figures: [...settings.only],
      },
      figures: figures.map((f) => ({ ...f, ratio: ratioOf(f) ?? null })),
      notes,
    };
    await writeFileAtomically(file, `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`results written to ${file}\n`);
  }
}

runMain("bench", main);
