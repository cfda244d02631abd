import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

/** The command line entry point in the sources, run through tsx. */
export const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
// Resolved here so the CLI also runs from a working directory without node_modules.
const NODE_ARGS = ["--import", import.meta.resolve("tsx"), CLI];

type Env = Record<string, string | undefined>;

/** process.env with `overrides` applied; an undefined value removes the variable. */
function childEnv(overrides: Env = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FRAISEQL_CLI_ENTRY: "1" };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `fraiseql ARGS...` to completion. */
export function runCli(args: readonly string[], options: { cwd?: string; env?: Env } = {}): CliResult {
  const r = spawnSync(process.execPath, [...NODE_ARGS, ...args], {
    cwd: options.cwd,
    env: childEnv(options.env),
    encoding: "utf8",
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `fraiseql ARGS...` in the background; output is collected into `output`. */
export function spawnCli(
  args: readonly string[],
  options: { cwd?: string; env?: Env } = {},
): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [...NODE_ARGS, ...args], {
    cwd: options.cwd,
    env: childEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d) => {
    output += d;
  });
  child.stderr?.on("data", (d) => {
    output += d;
  });
  return Object.assign(child, { output: () => output });
}

/** Resolves with the exit code (or signal) once the child has exited. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
}

/** Writes `toml` to `path` and runs `fraiseql migrate` on it; throws with its output if that fails. */
export async function writeMigratedConfig(path: string, toml: string): Promise<string> {
  await writeFile(path, toml);
  const migrated = runCli(["migrate", "--config", path]);
  if (migrated.status !== 0) throw new Error(`fraiseql migrate failed: ${migrated.stderr}`);
  return path;
}
