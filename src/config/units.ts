/**
 * Units live in config values (`"5s"`, `"10GB"`) and are parsed here, in one place.
 *
 * Durations: a sequence of `<number><unit>` parts, largest unit first, each unit at most once:
 * `ms`, `s`, `m`, `h`, `d`, `w` (`"100ms"`, `"1.5s"`, `"1h30m"`, `"7d"`). The result is whole
 * milliseconds, rounded to the nearest. A bare number is refused: `timeout = 30` could mean
 * seconds or milliseconds, so the unit must be written.
 *
 * Sizes: `<number><unit>` with `B`, decimal `KB`/`MB`/`GB`/`TB` (powers of 1000, as SI and disk
 * vendors use them) or binary `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024). Units are
 * case-insensitive (`10gb` is `10GB`); the result is whole bytes.
 */

import { FraiseqlError } from "../errors.js";

const DURATION_UNITS: readonly (readonly [string, number])[] = [
  ["w", 7 * 24 * 60 * 60 * 1000],
  ["d", 24 * 60 * 60 * 1000],
  ["h", 60 * 60 * 1000],
  ["m", 60 * 1000],
  ["s", 1000],
  ["ms", 1],
];

const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)(?![a-z])/iy;

/** Hint shown with every duration error. */
export const DURATION_HINT =
  'write a number followed by ms, s, m, h, d or w, e.g. "100ms", "5s", "1h30m", "7d"';

/** Hint shown with every size error. */
export const SIZE_HINT =
  'write a number followed by B, KB, MB, GB, TB (x1000) or KiB, MiB, GiB, TiB (x1024), e.g. "10GB"';

/**
 * Parses a duration such as `"100ms"`, `"1.5s"` or `"1h30m"` into milliseconds.
 * @throws FraiseqlError FQL_CONFIG_INVALID when the text is not a duration.
 */
export function parseDuration(text: string): number {
  const source = text.trim();
  const bad = (why: string): FraiseqlError =>
    new FraiseqlError("FQL_CONFIG_INVALID", `"${text}" is not a duration: ${why}`, { hint: DURATION_HINT });
  if (source === "") throw bad("it is empty");
  if (/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(source)) throw bad("it has no unit");
  if (source.startsWith("-")) throw bad("durations cannot be negative");
  let total = 0;
  let lastRank = -1;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < source.length) {
    const at = DURATION_PART.lastIndex;
    const match = DURATION_PART.exec(source);
    if (!match) throw bad(`cannot read "${source.slice(at)}"`);
    const unit = match[2]!.toLowerCase();
    const rank = DURATION_UNITS.findIndex(([u]) => u === unit);
    if (rank <= lastRank) throw bad(`write each unit once, largest first ("1h30m", not "30m1h")`);
    lastRank = rank;
    total += Number(match[1]) * DURATION_UNITS[rank]![1];
    while (source[DURATION_PART.lastIndex] === " ") DURATION_PART.lastIndex++;
  }
  if (!Number.isFinite(total) || total > Number.MAX_SAFE_INTEGER) throw bad("it is too large");
  return Math.round(total);
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/**
 * Parses a size such as `"10GB"` (10 000 000 000) or `"1KiB"` (1024) into bytes.
 * @throws FraiseqlError FQL_CONFIG_INVALID when the text is not a size.
 */
export function parseSize(text: string): number {
  const source = text.trim();
  const bad = (why: string): FraiseqlError =>
    new FraiseqlError("FQL_CONFIG_INVALID", `"${text}" is not a size: ${why}`, { hint: SIZE_HINT });
  const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)$/i.exec(source);
  if (!match) throw bad(source.startsWith("-") ? "sizes cannot be negative" : "expected a number and a unit");
  const unitText = match[2]!;
  if (unitText === "") throw bad("it has no unit");
  const factor = SIZE_UNITS[unitText.toLowerCase()];
  if (factor === undefined) throw bad(`unknown unit "${unitText}"`);
  const bytes = Math.round(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes)) throw bad("it is too large");
  return bytes;
}

/** Formats milliseconds back into the shortest duration text (`1500` -> `"1.5s"`), for messages. */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of DURATION_UNITS) {
    if (unit !== "ms" && ms >= factor && (ms * 10) % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}
