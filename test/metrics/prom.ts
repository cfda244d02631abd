import { spawnSync } from "node:child_process";

/** One sample of a Prometheus text exposition. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the samples of a Prometheus text exposition (comments skipped). */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, "$1");
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/**
 * The value of the one sample named `name` whose labels include `labels`; undefined when none.
 * Throws when several match (the test meant a more precise selection).
 */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

/** Sum of every sample named `name` whose labels include `labels`. */
export function sampleSum(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Whether `promtool` (Debian package `prometheus`) is on the PATH. */
export const PROMTOOL = spawnSync("promtool", ["--version"], { encoding: "utf8" }).status === 0;

/**
 * Skip reason for tests that need promtool; none when it is installed, or when
 * FRAISEQL_REQUIRE_SERVICES=1 (CI), where a missing promtool must fail rather than skip.
 */
export const NO_PROMTOOL =
  PROMTOOL || process.env.FRAISEQL_REQUIRE_SERVICES === "1"
    ? false
    : "promtool is not installed (apt-get install prometheus)";

/** Runs `promtool ARGS...`, optionally with `input` on stdin. */
export function promtool(args: readonly string[], input?: string): { status: number | null; output: string } {
  const r = spawnSync("promtool", args, { encoding: "utf8", ...(input === undefined ? {} : { input }) });
  if (r.error) return { status: null, output: `cannot run promtool: ${r.error.message}` };
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
