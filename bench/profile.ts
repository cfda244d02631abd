/**
 * `node --import tsx bench/profile.ts`: a CPU profile of the in-process drain, set up as the
 * drain figure of `bench/run.ts` sets it up (a receiver child process, a fresh PostgreSQL
 * database, N rows inserted into the observed table while no dispatcher runs, then a Dispatcher
 * started in this process and timed until N deliveries succeeded). Only the timed window is
 * profiled, after an untimed drain on a database of its own has warmed the JIT. Writes the
 * `.cpuprofile` (Chrome DevTools, VS Code, speedscope) and prints where the self time went.
 *
 * Options:
 * - `--n=N` (`BENCH_N`): deliveries of the profiled drain. (Default: 20000)
 * - `--warmup=N`: deliveries of the untimed drain before it; 0 skips it. (Default: 2000)
 * - `--queued`: drains deliveries already queued (routed in SQL before the clock), as the queued
 *   drain figure of `bench/run.ts` does, instead of events waiting in the outbox.
 * - `--interval=µs`: the sampling interval. (Default: 100)
 * - `--out=FILE`: the profile written. (Default: `bench/results/profile-<YYYY-MM-DD>.cpuprofile`)
 * - `--summarize=FILE`: prints the summary of a profile already written and runs nothing.
 *
 * The database server is `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`, else
 * `postgres://postgres@127.0.0.1:5432/test`, as for `npm run bench`; the databases created on
 * it are dropped at the end, on error or Ctrl-C.
 *
 * Line numbers of the project's files are those of the TypeScript sources: the profile holds
 * positions in the code tsx compiled, which are mapped back through its source maps when the
 * profile is taken and kept in the file next to the profile's own fields (`fraiseql.sources`).
 */

import { mkdir, readFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { findSourceMap } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Database } from "../src/db/driver.js";
import { openPostgres } from "../src/db/pg.js";
import { CpuProbe, type CpuProbeSources, type CpuUse, describeCpu } from "./cpu.js";
import { backendPids, connectServer, type DatabaseServer, redactUrl } from "./database.js";
import { type DrainResult, drainRate } from "./drain.js";
import { type Receiver, startReceiver } from "./receiver-control.js";
import { cleanUp, log, number, numberOption, onCleanup, runMain, writeFileAtomically } from "./resources.js";
import { prepareDatabase } from "./workload.js";

const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test";
/** The project's root, `file:///.../`, to name its files relative to it. */
const ROOT = new URL("../", import.meta.url).href;

/** The run's settings, resolved from argv and the environment. */
interface Settings {
  readonly n: number;
  readonly warmup: number;
  readonly queued: boolean;
  readonly intervalMicros: number;
  readonly out: string;
  /** A profile to summarise instead of running. */
  readonly summarize: string | undefined;
  readonly serverUrl: string;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      n: { type: "string" },
      warmup: { type: "string" },
      queued: { type: "boolean" },
      interval: { type: "string" },
      out: { type: "string" },
      summarize: { type: "string" },
    },
    strict: true,
  });
  const env = process.env;
  const today = new Date().toISOString().slice(0, 10);
  return {
    n: numberOption(values.n ?? env.BENCH_N, 20_000, "--n", { whole: true }),
    warmup: numberOption(values.warmup, 2000, "--warmup", { whole: true, zero: true }),
    queued: values.queued === true,
    intervalMicros: numberOption(values.interval, 100, "--interval", { whole: true }),
    out: values.out ?? fileURLToPath(new URL(`./results/profile-${today}.cpuprofile`, import.meta.url)),
    summarize: values.summarize,
    serverUrl: env.BENCH_DATABASE_URL || env.TEST_DATABASE_URL || DEFAULT_URL,
  };
}

// ---------------------------------------------------------------------------------------------
// The profile's format (V8's `Profiler.Profile`), and what this tool adds to it.

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  /** 0-based, in the code V8 ran. */
  readonly lineNumber: number;
  readonly columnNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** What the profiled drain measured, kept in the profile file. */
interface DrainMeta {
  readonly date: string;
  readonly node: string;
  readonly deliveries: number;
  readonly warmup: number;
  readonly samplingIntervalMicros: number;
  /** The drain's timed window, s. */
  readonly seconds: number;
  readonly perSecond: number;
  readonly cpu?: CpuUse | undefined;
  /** Node id -> 1-based [line, column] in the TypeScript source, for the project's files. */
  readonly sources: Record<string, [number, number]>;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** µs. */
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
  /** µs since the previous sample (the first: since `startTime`). */
  readonly timeDeltas?: readonly number[];
  readonly fraiseql?: DrainMeta;
}

/**
 * The 1-based source position of each node of a file that has a source map (the project's
 * TypeScript files compiled by tsx); read in the process that ran them.
 */
function sourcePositions(profile: CpuProfile): Record<string, [number, number]> {
  const sources: Record<string, [number, number]> = {};
  for (const node of profile.nodes) {
    const { url, lineNumber, columnNumber } = node.callFrame;
    if (!url.startsWith(ROOT) || url.includes("/node_modules/")) continue;
    const map = findSourceMap(url) ?? findSourceMap(fileURLToPath(url));
    const entry = map?.findEntry(lineNumber, columnNumber);
    if (entry && "originalLine" in entry) {
      sources[node.id] = [entry.originalLine + 1, entry.originalColumn + 1];
    }
  }
  return sources;
}

// ---------------------------------------------------------------------------------------------
// The drain, profiled.

/**
 * A {@link CpuProbe} that also runs the sampling profiler between `start()` and `stop()`: the
 * drain calls them right before starting the dispatcher and right after the last delivery
 * settled, so the profile covers its timed window and nothing else.
 */
class ProfilingProbe extends CpuProbe {
  /** Set by `stop()`. */
  profile: CpuProfile | undefined;

  constructor(
    sources: CpuProbeSources,
    private readonly session: Session,
  ) {
    super(sources);
  }

  override async start(): Promise<void> {
    await super.start();
    await this.session.post("Profiler.start");
  }

  override async stop(): Promise<CpuUse> {
    const { profile } = await this.session.post("Profiler.stop");
    this.profile = profile as CpuProfile;
    return super.stop();
  }
}

/** One drain on a fresh database, dropped afterwards; `probe` as the drain figure passes it. */
async function drainOnce(
  server: DatabaseServer,
  receiver: Receiver,
  deliveries: number,
  queued: boolean,
  probe?: (db: Database) => CpuProbe,
): Promise<DrainResult> {
  const database = await server.create();
  const db = await openPostgres(database.url);
  const closePool = onCleanup(() => db.close());
  try {
    await prepareDatabase(db, receiver.url);
    const result = await drainRate({
      db,
      receiverUrl: receiver.url,
      deliveries,
      queued,
      ...(probe ? { cpu: () => probe(db) } : {}),
    });
    const received = await receiver.count(true);
    if (received < deliveries) throw new Error(`receiver counted ${received} of ${deliveries} requests`);
    return result;
  } finally {
    await closePool();
    await database.drop();
  }
}

async function profileDrain(settings: Settings): Promise<CpuProfile> {
  const server = await connectServer(settings.serverUrl);
  if (!server) throw new Error(`no PostgreSQL reachable at ${redactUrl(settings.serverUrl)}`);
  const receiver = await startReceiver();
  if (settings.warmup > 0) {
    log(`warm-up: drain of ${number.format(settings.warmup)} deliveries, not profiled`);
    const warm = await drainOnce(server, receiver, settings.warmup, settings.queued);
    log(`warm-up: ${number.format(warm.perSecond)} deliveries/s`);
  }

  const session = new Session();
  session.connect();
  try {
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: settings.intervalMicros });
    const sources: CpuProbeSources = {
      receiverMicros: () => receiver.cpuMicros(),
      cores: availableParallelism(),
    };
    let probe: ProfilingProbe | undefined;
    log(
      `drain of ${number.format(settings.n)} ${settings.queued ? "queued " : ""}deliveries on PostgreSQL ${server.version}, ` +
        `profiled every ${settings.intervalMicros} µs`,
    );
    const result = await drainOnce(server, receiver, settings.n, settings.queued, (db) => {
      probe = new ProfilingProbe({ ...sources, postgresPids: () => backendPids(db) }, session);
      return probe;
    });
    const profile = probe?.profile;
    if (!profile) throw new Error("the drain did not stop the profiler");
    await session.post("Profiler.disable");
    log(`drain: ${number.format(result.perSecond)} deliveries/s over ${result.seconds.toFixed(2)} s`);
    const meta: DrainMeta = {
      date: new Date().toISOString(),
      node: process.version,
      deliveries: result.deliveries,
      warmup: settings.warmup,
      samplingIntervalMicros: settings.intervalMicros,
      seconds: result.seconds,
      perSecond: result.perSecond,
      cpu: result.cpu,
      sources: sourcePositions(profile),
    };
    return { ...profile, fraiseql: meta };
  } finally {
    session.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// The summary.

/** Packages of the PostgreSQL driver (`postgres-*` too). */
const PG_PACKAGES = new Set([
  "pg",
  "pg-protocol",
  "pg-types",
  "pg-pool",
  "pg-connection-string",
  "pg-int8",
  "pgpass",
  "buffer-writer",
  "packet-reader",
]);
/** pino and the packages it writes through. */
const PINO_PACKAGES = new Set([
  "pino",
  "pino-std-serializers",
  "pino-abstract-transport",
  "@pinojs/redact",
  "sonic-boom",
  "thread-stream",
  "quick-format-unescaped",
  "atomic-sleep",
  "on-exit-leak-free",
  "safe-stable-stringify",
]);

/** The package a `node_modules` URL belongs to (the innermost one), else undefined. */
function packageOf(url: string): string | undefined {
  const at = url.lastIndexOf("/node_modules/");
  if (at < 0) return undefined;
  const [scope = "", name = ""] = url.slice(at + "/node_modules/".length).split("/");
  return scope.startsWith("@") ? `${scope}/${name}` : scope;
}

/** A file URL without its query, relative to the project's root (or from its last `/src/`). */
function projectPath(url: string): string | undefined {
  if (!url.startsWith("file:")) return undefined;
  const path = url.replace(/[?#].*$/, "");
  if (path.startsWith(ROOT)) return path.slice(ROOT.length);
  const src = path.lastIndexOf("/src/");
  return src < 0 ? undefined : path.slice(src + 1);
}

/** The category of a frame's self time; the first rule that matches wins. */
function categoryOf(frame: CallFrame): string {
  const { functionName: name, url } = frame;
  if (url === "" && ["(idle)", "(program)", "(garbage collector)"].includes(name)) return name;
  const pkg = packageOf(url);
  if (pkg === "undici") return "undici";
  if (pkg !== undefined && (PG_PACKAGES.has(pkg) || pkg.startsWith("postgres-"))) return "pg driver";
  if (pkg !== undefined && PINO_PACKAGES.has(pkg)) return "pino";
  if (pkg !== undefined) return "other node_modules";
  const path = projectPath(url);
  if (path !== undefined && /^(src|bench)\//.test(path)) return path;
  if (url.startsWith("node:") || url.startsWith("internal/") || url === "") return "node core";
  return "other";
}

/** WebAssembly code, and V8's stubs in and out of it. */
function isWasm(frame: CallFrame): boolean {
  return (
    frame.url.startsWith("wasm://") ||
    frame.functionName.startsWith("js-to-wasm") ||
    frame.functionName.startsWith("wasm-to-js")
  );
}

/**
 * The category of each node: {@link categoryOf} its frame, but WebAssembly code (undici's HTTP
 * parser, llhttp) takes the category of the nearest JavaScript function above it.
 */
function nodeCategories(nodes: readonly ProfileNode[]): Map<number, string> {
  const parents = new Map<number, ProfileNode>();
  for (const node of nodes) for (const child of node.children ?? []) parents.set(child, node);
  const categories = new Map<number, string>();
  for (const node of nodes) {
    let caller: ProfileNode | undefined = node;
    while (caller && isWasm(caller.callFrame)) caller = parents.get(caller.id);
    categories.set(node.id, caller ? categoryOf(caller.callFrame) : "other");
  }
  return categories;
}

/** Where a frame is, for the list of functions: `src/delivery/http.ts:42`, `node:net:1120`. */
function placeOf(node: ProfileNode, sources: Record<string, [number, number]> | undefined): string {
  const { url, lineNumber } = node.callFrame;
  if (url === "") return "native";
  const line = sources?.[node.id]?.[0] ?? lineNumber + 1;
  const pkg = packageOf(url);
  const file = pkg
    ? `node_modules/${pkg}${url.slice(url.lastIndexOf("/node_modules/") + 14 + pkg.length)}`
    : (projectPath(url) ?? url);
  return `${file}:${line}`;
}

/** Self time per node id, µs: each sample lasts until the next one (the last until `endTime`). */
function selfTimes(profile: CpuProfile): { byNode: Map<number, number>; total: number; samples: number } {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const byNode = new Map<number, number>();
  let at = profile.startTime;
  const times = samples.map((_, i) => {
    at += deltas[i] ?? 0;
    return at;
  });
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    const next = times[i + 1] ?? Math.max(profile.endTime, times[i] ?? 0);
    const micros = Math.max(0, next - (times[i] ?? next));
    const id = samples[i] as number;
    byNode.set(id, (byNode.get(id) ?? 0) + micros);
    total += micros;
  }
  return { byNode, total, samples: samples.length };
}

function pad(rows: readonly (readonly string[])[], right: ReadonlySet<number>): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => r[c]?.length ?? 0))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, c) => (right.has(c) ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0)))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

const CATEGORY_ROWS = 15;
const FUNCTION_ROWS = 10;

/** The summary printed for a profile: self time by category, then the busiest functions. */
function summarize(profile: CpuProfile): string {
  const { byNode, total, samples } = selfTimes(profile);
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const categoryOfNode = nodeCategories(profile.nodes);
  const meta = profile.fraiseql;
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, { name: string; place: string; micros: number }>();
  for (const [id, micros] of byNode) {
    const node = nodes.get(id);
    if (!node) continue;
    const category = categoryOfNode.get(id) ?? "other";
    byCategory.set(category, (byCategory.get(category) ?? 0) + micros);
    if (node.callFrame.url === "" && node.callFrame.functionName.startsWith("(")) continue;
    const place = placeOf(node, meta?.sources);
    const name = node.callFrame.functionName || "(anonymous)";
    const key = `${name} ${place}`;
    const entry = byFunction.get(key) ?? { name, place, micros: 0 };
    entry.micros += micros;
    byFunction.set(key, entry);
  }
  const idle = byCategory.get("(idle)") ?? 0;
  const busy = total - idle;
  const share = (micros: number, of: number) => (of > 0 ? `${((micros / of) * 100).toFixed(1)}%` : "-");
  const ms = (micros: number) => (micros / 1000).toFixed(1);

  const categories = [...byCategory].sort((a, b) => b[1] - a[1]);
  const shown = categories.slice(0, CATEGORY_ROWS);
  const rest = categories.slice(CATEGORY_ROWS);
  const categoryRows = [
    ["category", "self ms", "of total", "of busy"],
    ...shown.map(([name, micros]) => [
      name,
      ms(micros),
      share(micros, total),
      name === "(idle)" ? "" : share(micros, busy),
    ]),
  ];
  if (rest.length > 0) {
    const micros = rest.reduce((sum, [, m]) => sum + m, 0);
    categoryRows.push([`(${rest.length} more)`, ms(micros), share(micros, total), share(micros, busy)]);
  }
  categoryRows.push(["total", ms(total), "100.0%", ""]);

  const functions = [...byFunction.values()].sort((a, b) => b.micros - a.micros).slice(0, FUNCTION_ROWS);
  const functionRows = [
    ["function", "where", "self ms", "of total"],
    ...functions.map((f) => [f.name, f.place, ms(f.micros), share(f.micros, total)]),
  ];

  const lines: string[] = [];
  const spanMs = (profile.endTime - profile.startTime) / 1000;
  lines.push(
    `sampled ${ms(total)} ms in ${number.format(samples)} samples (profile spans ${spanMs.toFixed(1)} ms); ` +
      `busy ${ms(busy)} ms (${share(busy, total)}), idle ${ms(idle)} ms`,
  );
  if (meta) {
    lines.push(
      `profiled drain: ${number.format(meta.deliveries)} deliveries in ${meta.seconds.toFixed(2)} s = ` +
        `${number.format(meta.perSecond)} deliveries/s (after a ${number.format(meta.warmup)}-delivery warm-up; ` +
        `sampling every ${meta.samplingIntervalMicros} µs, ${meta.node})`,
    );
    lines.push(`busy CPU of the main thread per delivery: ${Math.round(busy / meta.deliveries)} µs`);
    if (meta.cpu) lines.push(`CPU in cores: ${describeCpu(meta.cpu)}`);
  } else {
    lines.push("deliveries/s: unknown (not a profile written by bench/profile.ts)");
  }
  lines.push("", "self time by category:", pad(categoryRows, new Set([1, 2, 3])));
  lines.push("", `top ${FUNCTION_ROWS} functions by self time:`, pad(functionRows, new Set([2, 3])));
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const settings = readSettings();
  if (settings.summarize !== undefined) {
    const profile = JSON.parse(await readFile(settings.summarize, "utf8")) as CpuProfile;
    process.stdout.write(`${resolve(settings.summarize)}\n${summarize(profile)}`);
    return;
  }
  const profile = await profileDrain(settings);
  await cleanUp();
  const out = resolve(settings.out);
  await mkdir(dirname(out), { recursive: true });
  await writeFileAtomically(out, JSON.stringify(profile));
  process.stdout.write(`\nprofile written to ${out}\n${summarize(profile)}`);
}

runMain("profile", main);
