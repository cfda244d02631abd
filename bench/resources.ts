/**
 * What every part of the benchmark shares: the list of things to close (processes, databases,
 * pools, temporary files), closed in reverse order on success, error or Ctrl-C, and the progress
 * log on standard error.
 */

import { rename, writeFile } from "node:fs/promises";

const cleanups: (() => Promise<void>)[] = [];

/**
 * Registers `close` to run at the end of the run (last registered, first closed). Returns a
 * function that runs it now, once, and unregisters it.
 */
export function onCleanup(close: () => Promise<void>): () => Promise<void> {
  cleanups.push(close);
  let done: Promise<void> | undefined;
  return () => {
    if (!done) {
      const i = cleanups.indexOf(close);
      if (i >= 0) cleanups.splice(i, 1);
      done = close();
    }
    return done;
  };
}

/** Runs every registered cleanup, last first; a failure is reported and the rest still run. */
export async function cleanUp(): Promise<void> {
  for (const close of cleanups.splice(0).reverse()) {
    await close().catch((err: Error) => process.stderr.write(`cleanup: ${err.message}\n`));
  }
}

const processStart = performance.now();

/** Writes one progress line to standard error, prefixed with the seconds since the start. */
export function log(text: string): void {
  const at = ((performance.now() - processStart) / 1000).toFixed(1).padStart(5);
  process.stderr.write(`[${at} s] ${text}\n`);
}

/** The current time in ms since the epoch, with sub-millisecond precision (as the receiver reports it). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Formats a whole number with thousands separators (`20,000`). */
export const number = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** A mistake on the command line: reported in one line, without a stack trace. */
export class UsageError extends Error {}

/**
 * A numeric option (`--n=20000`, or its environment variable): `fallback` when absent or empty.
 * `whole` asks for an integer; `zero` allows 0. A bad value is a {@link UsageError} naming the option.
 */
export function numberOption(
  text: string | undefined,
  fallback: number,
  name: string,
  { whole = false, zero = false }: { whole?: boolean; zero?: boolean } = {},
): number {
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  const ok = Number.isFinite(value) && (zero ? value >= 0 : value > 0) && (!whole || Number.isInteger(value));
  if (!ok) {
    const kind = `${zero ? "non-negative" : "positive"}${whole ? " whole" : ""} number`;
    throw new UsageError(`${name} must be a ${kind}, got ${text}`);
  }
  return value;
}

/** Writes next to the target, then renames, so an interrupted run never leaves half a file. */
export async function writeFileAtomically(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

/**
 * Runs a benchmark entry point: Ctrl-C cleans up and exits 130; a command-line mistake is one line
 * and exit code 2; any other failure is logged with its stack, cleaned up, and exits 1.
 */
export function runMain(name: string, main: () => Promise<void>): void {
  let interrupted = false;
  process.once("SIGINT", () => {
    interrupted = true;
    log("interrupted: cleaning up");
    void cleanUp().finally(() => process.exit(130));
  });
  main().catch(async (err: Error & { code?: string }) => {
    // After Ctrl-C the figures fail on closed pools; that is not worth a stack trace.
    if (interrupted) return;
    const usage = err instanceof UsageError || err.code?.startsWith("ERR_PARSE_ARGS") === true;
    log(`${name} failed: ${usage ? err.message : (err.stack ?? err.message)}`);
    await cleanUp();
    process.exitCode = usage ? 2 : 1;
  });
}
