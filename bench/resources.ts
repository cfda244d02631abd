/**
 * What every part of the benchmark shares: the list of things to close (processes, databases,
 * pools, temporary files), closed in reverse order on success, error or Ctrl-C, and the progress
 * log on standard error.
 */

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
