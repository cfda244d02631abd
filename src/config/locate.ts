/**
 * Finds where a config key is written in TOML source text, so that errors found after parsing
 * (by the schema) can name a line and column.
 *
 * Key paths look like `webhooks.retry.max_attempts` or `observers[1].actions[0].url`: keys
 * joined by `.`, array elements as `[n]`, and keys that are not bare TOML keys quoted
 * (`headers."X.Custom"`). The scanner follows `[table]` and `[[array.of.tables]]` headers (with
 * their occurrence counts), dotted keys, inline tables and arrays, including multi-line arrays
 * and strings. A key that is not written (a missing required key, a default) falls back to its
 * nearest written ancestor, usually the table header.
 */

/** One step of a key path: a key, an array index, or a named item (`observers[on_created]`). */
export type PathSegment = string | number | { readonly name: string };

/** A 1-based position in the source text. */
export interface SourcePosition {
  readonly line: number;
  readonly column: number;
}

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

/** Formats a key path: `["observers", 1, "url"]` -> `observers[1].url`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "object") out += `[${segment.name}]`;
    else out += (out === "" ? "" : ".") + (BARE_KEY.test(segment) ? segment : JSON.stringify(segment));
  }
  return out;
}

/**
 * The position of `path` in `source` (the key itself for `key = value`, the `[` of a header for
 * a table), or of its nearest written ancestor; undefined when nothing of it is written.
 * `path` is a key path string or its segments.
 */
export function locateKey(source: string, path: string | readonly PathSegment[]): SourcePosition | undefined {
  const index = indexKeys(source);
  if (typeof path !== "string" && path.some((s) => typeof s === "object")) return undefined;
  let segments = typeof path === "string" ? parsePath(path) : (path as readonly (string | number)[]);
  while (segments.length > 0) {
    const found = index.get(formatPath(segments));
    if (found) return found;
    segments = segments.slice(0, -1);
  }
  return undefined;
}

/** Parses `a.b[1]."c.d"` into `["a", "b", 1, "c.d"]`. */
export function parsePath(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  let i = 0;
  while (i < path.length) {
    const ch = path[i]!;
    if (ch === ".") {
      i++;
    } else if (ch === "[") {
      const end = path.indexOf("]", i);
      const inner = path.slice(i + 1, end < 0 ? undefined : end);
      out.push(/^\d+$/.test(inner) ? Number(inner) : inner);
      i = end < 0 ? path.length : end + 1;
    } else if (ch === '"') {
      let j = i + 1;
      while (j < path.length && path[j] !== '"') j += path[j] === "\\" ? 2 : 1;
      out.push(JSON.parse(path.slice(i, j + 1)) as string);
      i = j + 1;
    } else {
      let j = i;
      while (j < path.length && path[j] !== "." && path[j] !== "[") j++;
      out.push(path.slice(i, j));
      i = j;
    }
  }
  return out;
}

const cache = new Map<string, Map<string, SourcePosition>>();

/**
 * Maps every written key path of `source` to its position. The source is assumed to be valid
 * TOML (it parsed already), so the scanner is lenient rather than exact.
 */
export function indexKeys(source: string): Map<string, SourcePosition> {
  const cached = cache.get(source);
  if (cached) return cached;
  const index = new KeyScanner(source).scan();
  if (cache.size > 16) cache.clear();
  cache.set(source, index);
  return index;
}

class KeyScanner {
  private pos = 0;
  private readonly lineStarts: number[] = [0];
  private readonly found = new Map<string, SourcePosition>();
  /** Array-of-tables paths (concrete, formatted) -> number of elements so far. */
  private readonly arrayCounts = new Map<string, number>();

  constructor(private readonly src: string) {
    for (let i = 0; i < src.length; i++) if (src[i] === "\n") this.lineStarts.push(i + 1);
  }

  scan(): Map<string, SourcePosition> {
    let table: (string | number)[] = [];
    for (;;) {
      this.skipBlank(true);
      if (this.pos >= this.src.length) break;
      const start = this.pos;
      if (this.src.startsWith("[[", this.pos)) {
        this.pos += 2;
        const keys = this.readKey();
        this.pos = skipPast(this.src, "]]", this.pos);
        table = this.concrete(keys.slice(0, -1));
        table.push(keys.at(-1)!);
        const arrayPath = formatPath(table);
        const n = this.arrayCounts.get(arrayPath) ?? 0;
        this.arrayCounts.set(arrayPath, n + 1);
        this.record(table, start);
        table.push(n);
        this.record(table, start);
      } else if (this.src[this.pos] === "[") {
        this.pos += 1;
        const keys = this.readKey();
        this.pos = skipPast(this.src, "]", this.pos);
        table = this.concrete(keys);
        this.record(table, start);
      } else {
        this.readKeyValue(table);
      }
      this.skipToLineEnd();
    }
    return this.found;
  }

  /** Resolves header keys to a concrete path: array-of-tables prefixes get their latest index. */
  private concrete(keys: readonly string[]): (string | number)[] {
    const out: (string | number)[] = [];
    for (const key of keys) {
      out.push(key);
      const n = this.arrayCounts.get(formatPath(out));
      if (n !== undefined) out.push(n - 1);
    }
    return out;
  }

  private readKeyValue(prefix: readonly (string | number)[]): void {
    const start = this.pos;
    const keys = this.readKey();
    if (keys.length === 0) {
      this.pos++;
      return;
    }
    const path = [...prefix, ...keys];
    this.record(path, start);
    this.skipBlank(false);
    if (this.src[this.pos] === "=") this.pos++;
    this.skipBlank(false);
    this.readValue(path);
  }

  private readValue(path: readonly (string | number)[]): void {
    const src = this.src;
    const ch = src[this.pos];
    if (src.startsWith('"""', this.pos) || src.startsWith("'''", this.pos)) {
      const quote = src.slice(this.pos, this.pos + 3);
      let i = this.pos + 3;
      for (;;) {
        const end = src.indexOf(quote, i);
        if (end < 0) {
          i = src.length;
          break;
        }
        if (quote === '"""' && isEscaped(src, end)) {
          i = end + 1;
          continue;
        }
        i = end + 3;
        while (src[i] === quote[0]) i++;
        break;
      }
      this.pos = i;
    } else if (ch === '"' || ch === "'") {
      this.readString();
    } else if (ch === "[") {
      this.pos++;
      let n = 0;
      for (;;) {
        this.skipBlank(true);
        if (this.pos >= src.length || src[this.pos] === "]") break;
        this.record([...path, n], this.pos);
        this.readValue([...path, n++]);
        this.skipBlank(true);
        if (src[this.pos] === ",") this.pos++;
      }
      this.pos++;
    } else if (ch === "{") {
      this.pos++;
      for (;;) {
        this.skipBlank(true);
        if (this.pos >= src.length || src[this.pos] === "}") break;
        this.readKeyValue(path);
        this.skipBlank(true);
        if (src[this.pos] === ",") this.pos++;
      }
      this.pos++;
    } else {
      while (this.pos < src.length && !",]}\n#".includes(src[this.pos]!)) this.pos++;
    }
  }

  /** Reads a possibly dotted key (`a."b.c".d`) and returns its parts. */
  private readKey(): string[] {
    const keys: string[] = [];
    for (;;) {
      this.skipBlank(false);
      const ch = this.src[this.pos];
      if (ch === '"' || ch === "'") {
        const start = this.pos;
        this.readString();
        const raw = this.src.slice(start, this.pos);
        keys.push(ch === "'" ? raw.slice(1, -1) : unescapeBasic(raw));
      } else {
        const start = this.pos;
        while (this.pos < this.src.length && /[A-Za-z0-9_-]/.test(this.src[this.pos]!)) this.pos++;
        if (this.pos === start) return keys;
        keys.push(this.src.slice(start, this.pos));
      }
      this.skipBlank(false);
      if (this.src[this.pos] !== ".") return keys;
      this.pos++;
    }
  }

  private readString(): void {
    const quote = this.src[this.pos];
    let i = this.pos + 1;
    while (i < this.src.length && this.src[i] !== quote && this.src[i] !== "\n") {
      i += quote === '"' && this.src[i] === "\\" ? 2 : 1;
    }
    this.pos = i + 1;
  }

  /** Skips spaces and comments, and newlines too when `lines` is set. */
  private skipBlank(lines: boolean): void {
    const src = this.src;
    while (this.pos < src.length) {
      const ch = src[this.pos]!;
      if (ch === " " || ch === "\t" || ch === "\r" || (lines && ch === "\n")) this.pos++;
      else if (ch === "#") while (this.pos < src.length && src[this.pos] !== "\n") this.pos++;
      else break;
    }
  }

  private skipToLineEnd(): void {
    this.skipBlank(false);
    while (this.pos < this.src.length && this.src[this.pos] !== "\n") this.pos++;
  }

  private record(path: readonly (string | number)[], offset: number): void {
    // Every prefix is recorded too, so a dotted key `a.b = 1` also locates `a`.
    for (let n = 1; n <= path.length; n++) {
      const key = formatPath(path.slice(0, n));
      if (!this.found.has(key)) this.found.set(key, this.position(offset));
    }
  }

  private position(offset: number): SourcePosition {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - this.lineStarts[lo]! + 1 };
  }
}

function skipPast(src: string, needle: string, from: number): number {
  const at = src.indexOf(needle, from);
  return at < 0 ? src.length : at + needle.length;
}

function isEscaped(src: string, at: number): boolean {
  let backslashes = 0;
  for (let i = at - 1; i >= 0 && src[i] === "\\"; i--) backslashes++;
  return backslashes % 2 === 1;
}

function unescapeBasic(raw: string): string {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return raw.slice(1, -1);
  }
}
