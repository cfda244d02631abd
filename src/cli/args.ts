import { readFile } from "node:fs/promises";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { parseDuration } from "../config/units.js";
import { FraiseqlError } from "../errors.js";

/** parseArgs with errors turned into FQL_USAGE paragraphs. */
type Options = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedCommand<T extends Options> {
  values: ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>>["values"];
  positionals: string[];
}

export function parseCommandArgs<T extends Options>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = true,
): ParsedCommand<T> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new FraiseqlError("FQL_USAGE", `${command}: ${(err as Error).message}`, {
      hint: `Run "fraiseql help" for the list of commands and options.`,
    });
  }
}

/** A `--since`-style value: a duration back from now (24h, 7d) or a date (2025-02-10). */
export function timeArg(value: string | undefined, key: string): Date | undefined {
  if (value === undefined) return undefined;
  try {
    return new Date(Date.now() - parseDuration(value));
  } catch (err) {
    const at = new Date(value);
    if (!Number.isNaN(at.getTime())) return at;
    throw new FraiseqlError(
      "FQL_USAGE",
      `${key}: "${value}" is neither a duration (24h, 7d) nor a date (2025-02-10)`,
      {
        cause: err,
      },
    );
  }
}

/** A duration option such as `--delay 30s`, in ms. */
export function durationArg(value: string, key: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new FraiseqlError("FQL_USAGE", `${key}: "${value}" is not a duration (30s, 5m)`, { cause: err });
  }
}

/** `--limit N`: a positive whole number, `fallback` when absent. */
export function limitArg(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new FraiseqlError("FQL_USAGE", `--limit: "${value}" is not a positive whole number`);
  }
  return n;
}

/**
 * The first `limit` of `rows` (read with `limit + 1`), and a note on stderr when there were
 * more, so a list cut at its limit never looks complete.
 */
export function withinLimit<T>(rows: readonly T[], limit: number, what: string): readonly T[] {
  if (rows.length <= limit) return rows;
  process.stderr.write(`showing the newest ${limit} ${what}; there are more: pass --limit N to see more\n`);
  return rows.slice(0, limit);
}

/** This package's version, from its package.json (beside `src/` and `dist/` alike). */
export async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}
