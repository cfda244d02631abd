/**
 * `npm run bench`: measures the pipeline against baselines taken in the same run, prints a table
 * and writes `bench/results/<YYYY-MM-DD>.json` (`<YYYY-MM-DD>.quick.json` for `--quick`).
 *
 * Options (argv, or the environment variable in brackets):
 * - `--quick` (`BENCH_QUICK=1`): a smoke run of a few seconds, for CI.
 * - `--pglite` (`BENCH_PGLITE=1`): also drain on the embedded PGlite.
 * - `--n=N` (`BENCH_N`): requests per HTTP figure and deliveries per drain. (Default: 10000;
 *   quick: 1000; the PGlite drain takes at most 1000, quick 200)
 * - `--seconds=S` (`BENCH_SECONDS`): measured time per table of the insert figure. (Default: 5;
 *   quick: 1)
 * - `--only=raw,drain,insert` (`BENCH_ONLY`): run only these figures; the raw POST baseline
 *   always runs. (Default: all)
 * - `--no-write`: print, do not write the results file.
 *
 * The database server is `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`, else
 * `postgres://postgres@127.0.0.1:5432/test`; a fresh `fraiseql_bench_<random>` database is
 * created on it and dropped at the end. With no server reachable everything runs on PGlite and
 * the output says so.
 */

import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pg from "pg";
import { openFraiseql } from "../src/app.js";
import { captureTriggerInstalled } from "../src/capture/triggers.js";
import type { Database } from "../src/db/driver.js";
import { openPostgres } from "../src/db/pg.js";
import { openPglite } from "../src/db/pglite.js";
import { CpuProbe, type CpuUse, describeCpu, mergeCpu, otherCpu } from "./cpu.js";
import { drainRate } from "./drain.js";
import { insertRates } from "./insert.js";
import { type RateResult, rawPostRate, senderPostRate } from "./post.js";
import type { ReceiverReply, ReceiverRequest } from "./receiver.js";
import { benchConfig } from "./workload.js";

const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test";
const FIGURES = ["raw", "drain", "insert"] as const;
type FigureName = (typeof FIGURES)[number];

/** The run's settings, resolved from argv and the environment. */
interface Settings {
  readonly quick: boolean;
  readonly pglite: boolean;
  readonly n: number;
  readonly pgliteN: number;
  readonly insertSeconds: number;
  readonly only: ReadonlySet<FigureName>;
  readonly write: boolean;
  readonly serverUrl: string;
}

/** One line of the table, and one entry of the results file. */
interface Figure {
  readonly id: string;
  readonly label: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: { readonly id: string; readonly value: number; readonly unit: string };
  /** CPU use during the timed part, when measured. */
  readonly cpu?: CpuUse | undefined;
  readonly details?: Record<string, unknown>;
}

function flag(value: boolean | undefined, env: string | undefined): boolean {
  return value === true || (env !== undefined && env !== "" && env !== "0" && env !== "false");
}

function positive(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive number, got ${text}`);
  }
  return value;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" },
      pglite: { type: "boolean" },
      n: { type: "string" },
      seconds: { type: "string" },
      only: { type: "string" },
      "no-write": { type: "boolean" },
    },
    strict: true,
  });
  const env = process.env;
  const quick = flag(values.quick, env.BENCH_QUICK);
  const n = Math.round(positive(values.n ?? env.BENCH_N, quick ? 1000 : 10_000, "--n"));
  const onlyText = values.only ?? env.BENCH_ONLY;
  const only = new Set<FigureName>();
  for (const name of (onlyText ?? FIGURES.join(",")).split(",")) {
    const trimmed = name.trim();
    if (!FIGURES.includes(trimmed as FigureName)) {
      throw new Error(`--only takes ${FIGURES.join(", ")}; got ${trimmed}`);
    }
    only.add(trimmed as FigureName);
  }
  return {
    quick,
    pglite: flag(values.pglite, env.BENCH_PGLITE),
    n,
    // PGlite runs every statement through one in-process connection; a smaller drain keeps the
    // run short and still shows its rate.
    pgliteN: Math.min(n, quick ? 200 : 1000),
    insertSeconds: positive(values.seconds ?? env.BENCH_SECONDS, quick ? 1 : 5, "--seconds"),
    only,
    write: values["no-write"] !== true,
    serverUrl: env.BENCH_DATABASE_URL || env.TEST_DATABASE_URL || DEFAULT_URL,
  };
}

// ---------------------------------------------------------------------------------------------
// Resources: everything opened is closed in reverse order, on success, error or Ctrl-C.

const cleanups: (() => Promise<void>)[] = [];

async function cleanUp(): Promise<void> {
  for (const close of cleanups.splice(0).reverse()) {
    await close().catch((err: Error) => process.stderr.write(`cleanup: ${err.message}\n`));
  }
}

const processStart = performance.now();

function log(text: string): void {
  const at = ((performance.now() - processStart) / 1000).toFixed(1).padStart(5);
  process.stderr.write(`[${at} s] ${text}\n`);
}

/** The receiver child process and a way to read and reset its request count. */
interface Receiver {
  readonly url: string;
  /** Requests received since the last reset. */
  count(reset?: boolean): Promise<number>;
  /** The child's CPU time so far, µs. */
  cpuMicros(): Promise<number>;
}

async function startReceiver(): Promise<Receiver> {
  const child: ChildProcess = fork(fileURLToPath(new URL("./receiver.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  cleanups.push(async () => {
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
  const ask = (reset: boolean) =>
    new Promise<{ count: number; cpuMicros: number }>((resolve) => {
      const onMessage = (message: ReceiverReply) => {
        if (message.type !== "count") return;
        child.off("message", onMessage);
        resolve(message);
      };
      child.on("message", onMessage);
      child.send({ type: "count", reset } satisfies ReceiverRequest);
    });
  return {
    url: `http://127.0.0.1:${port}`,
    count: async (reset = false) => (await ask(reset)).count,
    cpuMicros: async () => (await ask(false)).cpuMicros,
  };
}

/** Creates `fraiseql_bench_<random>` on the server and returns its URL; undefined when unreachable. */
async function createBenchDatabase(serverUrl: string): Promise<{ url: string; version: string } | undefined> {
  const admin = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 3000 });
  admin.on("error", () => {});
  try {
    await admin.connect();
  } catch (err) {
    await admin.end().catch(() => {});
    log(
      `no PostgreSQL reachable at ${redactUrl(serverUrl)} (${(err as Error).message}): running on PGlite only`,
    );
    return undefined;
  }
  const name = `fraiseql_bench_${randomBytes(6).toString("hex")}`;
  try {
    const { rows } = await admin.query<{ server_version: string }>("SHOW server_version");
    await admin.query(`CREATE DATABASE ${name}`);
    cleanups.push(async () => {
      const drop = new pg.Client({ connectionString: serverUrl });
      await drop.connect();
      try {
        await drop.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await drop.end();
      }
    });
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    return { url: url.toString(), version: rows[0]?.server_version ?? "unknown" };
  } finally {
    await admin.end();
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return url;
  }
}

/** Migrates a benchmark database (internal tables, entity tables, capture triggers). */
async function prepareDatabase(db: Database, receiverUrl: string): Promise<void> {
  const config = benchConfig(receiverUrl);
  const app = await openFraiseql(config, { db });
  try {
    await app.migrate();
    const [drained, plain, observed] = config.entities;
    if (!drained || !plain || !observed) throw new Error("benchmark configuration lost an entity");
    if (!(await captureTriggerInstalled(db, drained)) || !(await captureTriggerInstalled(db, observed))) {
      throw new Error("capture trigger missing on an observed benchmark table");
    }
    if (await captureTriggerInstalled(db, plain)) throw new Error(`capture trigger found on ${plain.table}`);
  } finally {
    await app.close();
  }
}

const tracked = new Map<Database, () => Promise<void>>();

async function openTracked<T extends Database>(open: Promise<T>): Promise<T> {
  const db = await open;
  const close = () => db.close();
  tracked.set(db, close);
  cleanups.push(close);
  return db;
}

async function closeTracked(db: Database): Promise<void> {
  const close = tracked.get(db);
  tracked.delete(db);
  const i = close ? cleanups.indexOf(close) : -1;
  if (i >= 0) cleanups.splice(i, 1);
  await db.close();
}

// ---------------------------------------------------------------------------------------------
// Output.

const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function show(value: number, unit: string): string {
  return `${number.format(value)} ${unit}`;
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
        show(f.value, f.unit),
        f.baseline ? show(f.baseline.value, f.baseline.unit) : "-",
        ratio === undefined ? "-" : ratio.toFixed(2),
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

async function pgSettings(db: Database): Promise<Record<string, string>> {
  const { rows } = await db.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings
      WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'wal_level')`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
}

async function backendPids(db: Database): Promise<number[]> {
  const { rows } = await db.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
  );
  return rows.map((r) => r.pid);
}

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const settings = readSettings();
  const started = performance.now();
  const figures: Figure[] = [];
  const notes: string[] = [];
  const runs = (name: FigureName) => settings.only.has(name);

  const receiver = await startReceiver();
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
  const server = await createBenchDatabase(settings.serverUrl);
  if (!server) {
    notes.push(`no PostgreSQL reachable at ${redactUrl(settings.serverUrl)}: every figure ran on PGlite`);
  }
  const machine: Record<string, unknown> = {
    cpu: cpus()[0]?.model ?? "unknown",
    cores,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${platform()} ${release()}`,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    node: process.version,
    postgresql: server?.version ?? null,
    pglite: await pgliteVersion(),
  };

  // (1) The baseline, always: every other HTTP figure is a ratio to it. It is measured first and,
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
  const rawRuns = [await measureRaw("before")];
  type Baseline = NonNullable<Figure["baseline"]>;
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
    if (server) drains.push({ kind: "pg", open: () => openTracked(openPostgres(server.url)), n: settings.n });
    if (!server || settings.pglite) {
      drains.push({ kind: "pglite", open: () => openTracked(openPglite()), n: settings.pgliteN });
    }
  }
  for (const drain of drains) {
    log(`drain on ${drain.kind}: ${number.format(drain.n)} deliveries waiting in the outbox`);
    const db = await drain.open();
    await prepareDatabase(db, receiver.url);
    if (drain.kind === "pg" && !machine.pgSettings) machine.pgSettings = await pgSettings(db);
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
  }

  if (httpFigures.length > 0) rawRuns.push(await measureRaw("after"));
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

  if (runs("insert")) {
    const kind = server ? "pg" : "pglite";
    log(`insert: single-row INSERTs from 16 loops, ${settings.insertSeconds} s per table (${kind})`);
    // Its own pool of 16 connections (the pipeline's default is 10).
    const db = await openTracked(
      server ? openPostgres(server.url, { max: 16, applicationName: "fraiseql-bench" }) : openPglite(),
    );
    await prepareDatabase(db, receiver.url);
    if (server && !machine.pgSettings) machine.pgSettings = await pgSettings(db);
    const result = await insertRates({ db, seconds: settings.insertSeconds, cpu: cpuWith(db) });
    await closeTracked(db);
    if (!server) notes.push("insert figure on PGlite: the 16 loops share its single in-process connection");
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

  await cleanUp();
  const totalSeconds = (performance.now() - started) / 1000;

  process.stdout.write(`\n${table(figures)}\n\nCPU during each timed part, in cores:\n`);
  for (const f of figures) {
    if (f.cpu) process.stdout.write(`  ${f.label.trim().padEnd(34)} ${describeCpu(f.cpu)}\n`);
  }
  const database = server ? `PostgreSQL ${machine.postgresql}` : "PGlite only";
  process.stdout.write(
    `\n${machine.cpu} x${cores}, node ${machine.node}, ${database}; ${totalSeconds.toFixed(1)} s in all\n`,
  );
  for (const note of notes) process.stdout.write(`note: ${note}\n`);

  if (settings.write) {
    const dir = fileURLToPath(new URL("./results/", import.meta.url));
    await mkdir(dir, { recursive: true });
    const file = `${dir}${today()}${settings.quick ? ".quick" : ""}.json`;
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
        figures: [...settings.only],
      },
      figures: figures.map((f) => ({ ...f, ratio: ratioOf(f) ?? null })),
      notes,
    };
    // Written next to the target, then renamed, so an interrupted run never leaves half a file.
    await writeFile(`${file}.tmp`, `${JSON.stringify(results, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
    process.stdout.write(`results written to ${file}\n`);
  }
}

let interrupted = false;

process.once("SIGINT", () => {
  interrupted = true;
  log("interrupted: cleaning up");
  void cleanUp().finally(() => process.exit(130));
});

main().catch(async (err: Error) => {
  // After Ctrl-C the figures fail on closed pools; that is not worth a stack trace.
  if (interrupted) return;
  log(`bench failed: ${err.stack ?? err.message}`);
  await cleanUp();
  process.exitCode = 1;
});
