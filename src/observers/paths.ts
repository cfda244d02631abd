/**
 * Field paths, shared by conditions and templates: how `status`, `old.status`, `status.old`,
 * `payload.customer.country` and `new.payload.old` name a value of a row change, how that value
 * is read at run time, and how unknown fields are reported.
 *
 * Glossary
 * - image: one version of the row. `old` is the row before the change (null for INSERT), `new`
 *   the row after it (null for DELETE). `current` is the image a bare path reads: `new` for
 *   INSERT and UPDATE, `old` for DELETE.
 * - field: a top-level column of the entity (`payload` in `payload.customer.country`).
 * - keys: the JSON keys below the field (`customer`, `country`).
 *
 * Resolution rules (documented in docs/conditions.md):
 * - A path of two or more segments whose first segment is `old` or `new` names that image; every
 *   later segment is taken literally (the field, then JSON keys), even `old`, `new` or `changed`.
 * - Otherwise a path of two or more segments whose last segment is `old` or `new` names that
 *   image of the rest (`status.old`).
 * - Otherwise the path reads the current image.
 * - Without an image prefix, `old` or `new` in the middle of a path is refused as ambiguous.
 */

import type { EventKind, FieldModel } from "../config/types.js";
import { type ErrorCode, FraiseqlError } from "../errors.js";

/** Which version of the row a path reads. */
export type Image = "current" | "old" | "new";

/** One `.`-separated name of a path as written, with its 0-based offsets in the expression. */
export interface PathSegment {
  readonly name: string;
  readonly start: number;
  readonly end: number;
}

/** A path after resolution: which image, which top-level field, which JSON keys below it. */
export interface FieldPath {
  readonly image: Image;
  readonly field: string;
  readonly keys: readonly string[];
  /** The path as written. */
  readonly text: string;
  readonly start: number;
  readonly end: number;
  /** Declared type of the top-level field, when the entity's fields were given. */
  readonly declared: FieldModel | undefined;
}

/** The two images of a change plus its kind: what a path is read against. */
export interface ImageContext {
  readonly event: EventKind;
  readonly old: Record<string, unknown> | null;
  readonly new: Record<string, unknown> | null;
}

/** Error codes to raise for path problems: conditions and templates each have their own family. */
export interface PathErrorCodes {
  readonly syntax: ErrorCode;
  readonly unknownField: ErrorCode;
  /** A key below a field that has no keys (a non-JSON field). */
  readonly type: ErrorCode;
}

/** Options of {@link resolvePath}. */
export interface ResolvePathOptions {
  /** Declared fields; when given, unknown fields and keys below non-JSON fields are errors. (Default: unchecked) */
  readonly fields?: readonly FieldModel[] | undefined;
  readonly codes: PathErrorCodes;
  /** Full expression text, for error carets. */
  readonly expression: string;
  /** Words prepended to error messages, e.g. the body key of a template. (Default: none) */
  readonly context?: string | undefined;
}

/** True for the characters that may start an identifier: ASCII letters and `_`. */
export function isIdentStart(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95;
}

/** True for the characters that may continue an identifier: ASCII letters, digits and `_`. */
export function isIdentPart(code: number): boolean {
  return isIdentStart(code) || (code >= 48 && code <= 57);
}

function isImageName(name: string): name is "old" | "new" {
  return name === "old" || name === "new";
}

/**
 * Resolves written segments into a {@link FieldPath}, applying the image rules above and, when
 * `fields` are given, checking that the field exists and that only JSON fields have keys.
 */
export function resolvePath(segments: readonly PathSegment[], options: ResolvePathOptions): FieldPath {
  const first = segments[0];
  const last = segments[segments.length - 1];
  if (first === undefined || last === undefined) {
    throw new FraiseqlError(options.codes.syntax, prefix(options, "a field name is expected"), {
      expression: options.expression,
      position: 0,
    });
  }
  let image: Image = "current";
  let body: readonly PathSegment[] = segments;
  if (segments.length >= 2 && isImageName(first.name)) {
    image = first.name;
    body = segments.slice(1);
  } else {
    if (segments.length >= 2 && isImageName(last.name)) {
      image = last.name;
      body = segments.slice(0, -1);
    }
    for (let i = 1; i < body.length; i++) {
      const segment = body[i]!;
      if (isImageName(segment.name)) {
        const rest = body.map((s) => s.name);
        const field = rest[0]!;
        const imageForm = `${segment.name}.${[field, ...rest.slice(1, i), ...rest.slice(i + 1)].join(".")}`;
        throw new FraiseqlError(
          options.codes.syntax,
          prefix(options, `"${segment.name}" in the middle of a path is ambiguous`),
          {
            expression: options.expression,
            position: segment.start,
            hint: `Write ${imageForm} for the ${segment.name} image, or new.${rest.join(".")} to read a JSON key named "${segment.name}".`,
          },
        );
      }
    }
  }
  const fieldSegment = body[0]!;
  const keys = body.slice(1).map((s) => s.name);
  let declared: FieldModel | undefined;
  if (options.fields !== undefined) {
    declared = options.fields.find((f) => f.name === fieldSegment.name);
    if (declared === undefined) throw unknownFieldError(fieldSegment, options);
    const firstKey = body[1];
    if (firstKey !== undefined && declared.type !== "JSON") {
      const method =
        firstKey.name === "changed" && keys.length === 1 && options.codes.type === "FQL_CONDITION_TYPE";
      throw new FraiseqlError(
        options.codes.type,
        prefix(
          options,
          method
            ? `${fieldSegment.name}.changed needs parentheses: ${fieldSegment.name}.changed()`
            : `${fieldSegment.name} is ${declared.type}, not JSON, so it has no key "${firstKey.name}"`,
        ),
        { expression: options.expression, position: firstKey.start },
      );
    }
  }
  return {
    image,
    field: fieldSegment.name,
    keys,
    text: options.expression.slice(first.start, last.end),
    start: first.start,
    end: last.end,
    declared,
  };
}

function prefix(options: ResolvePathOptions, message: string): string {
  return options.context ? `${options.context}: ${message}` : message;
}

function unknownFieldError(segment: PathSegment, options: ResolvePathOptions): FraiseqlError {
  const names = (options.fields ?? []).map((f) => f.name);
  const nearest = nearestName(segment.name, names);
  const imageNote = isImageName(segment.name)
    ? ` ${segment.name}.<field> reads the ${segment.name} image of a field.`
    : "";
  const listed = names.length > 0 ? names.join(", ") : "(none)";
  return new FraiseqlError(
    options.codes.unknownField,
    prefix(options, `unknown field "${segment.name}"; the entity has: ${listed}`),
    {
      expression: options.expression,
      position: segment.start,
      hint: `${nearest === undefined ? "" : `did you mean ${nearest}?`}${imageNote}`.trim(),
    },
  );
}

/**
 * The candidate closest to `name` by edit distance (case-insensitive), when it is close enough to
 * be a likely typo: at most a third of the name's length, and at least 1. Undefined otherwise.
 */
export function nearestName(name: string, candidates: readonly string[]): string | undefined {
  const target = name.toLowerCase();
  const limit = Math.max(1, Math.floor(target.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(target, candidate.toLowerCase(), limit);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

// Damerau-style (adjacent transposition counts once, so "stauts" is 1 away from "status");
// gives up early past `limit` so long hostile names cost little.
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prevPrev: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      let value = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, prevPrev[j - 2]! + 1);
      }
      row.push(value);
      if (value < rowMin) rowMin = value;
    }
    if (rowMin > limit) return limit + 1;
    prevPrev = prev;
    prev = row;
  }
  return prev[b.length]!;
}

/** Reads `key` of a JSON object; anything else (arrays, scalars, null, a missing key) reads as null. */
export function readKey(value: unknown, key: string): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  return readOwn(value as Record<string, unknown>, key, key in Object.prototype);
}

// Only names that Object.prototype also has ("constructor", "toString", "__proto__") need the
// own-property test, which is several times slower than a plain read on the hot path.
function readOwn(row: Record<string, unknown>, name: string, inherited: boolean): unknown {
  if (inherited && !Object.hasOwn(row, name)) return null;
  const value = row[name];
  return value === undefined ? null : value;
}

/** `undefined` reads as null: a missing field, key or image is null. */
export function normalize(value: unknown): unknown {
  return value === undefined ? null : value;
}

/** The image a path reads for a given change. */
export function selectImage(ctx: ImageContext, image: Image): Record<string, unknown> | null {
  if (image === "old") return ctx.old;
  if (image === "new") return ctx.new;
  return ctx.event === "DELETE" ? ctx.old : ctx.new;
}

/** A reader of one field (plus keys) of one explicit image; `image` "current" follows the event. */
export function compileReader(
  image: Image,
  field: string,
  keys: readonly string[],
): (ctx: ImageContext) => unknown {
  const inherited = field in Object.prototype;
  const readField = (row: Record<string, unknown> | null): unknown =>
    row === null ? null : readOwn(row, field, inherited);
  if (keys.length === 0) {
    if (image === "current") {
      return (ctx) => readField(ctx.event === "DELETE" ? ctx.old : ctx.new);
    }
    return image === "old" ? (ctx) => readField(ctx.old) : (ctx) => readField(ctx.new);
  }
  if (keys.length === 1) {
    const key = keys[0]!;
    return (ctx) => readKey(readField(selectImage(ctx, image)), key);
  }
  return (ctx) => {
    let value = readField(selectImage(ctx, image));
    for (const key of keys) {
      if (value === null) return null;
      value = readKey(value, key);
    }
    return value;
  };
}

/**
 * Splits `source.slice(start, end)` into path segments (`a.b.c`, surrounding whitespace allowed),
 * for templates. Throws `code` with the position of the first character that does not fit.
 */
export function parsePathText(
  source: string,
  start: number,
  end: number,
  code: ErrorCode,
  context?: string,
): PathSegment[] {
  let i = start;
  while (i < end && isSpace(source.charCodeAt(i))) i++;
  let stop = end;
  while (stop > i && isSpace(source.charCodeAt(stop - 1))) stop--;
  const fail = (position: number, message: string): FraiseqlError =>
    new FraiseqlError(code, context ? `${context}: ${message}` : message, {
      expression: source,
      position,
      hint: "Inside {{ }} write one field path (total, customer.email, old.status) or a name such as _timestamp.",
    });
  if (i === stop) throw fail(i, "empty {{ }}: a field path is expected");
  const segments: PathSegment[] = [];
  for (;;) {
    if (!isIdentStart(source.charCodeAt(i))) throw fail(i, "a field name is expected");
    const segmentStart = i;
    while (i < stop && isIdentPart(source.charCodeAt(i))) i++;
    segments.push({ name: source.slice(segmentStart, i), start: segmentStart, end: i });
    if (i === stop) return segments;
    if (source.charCodeAt(i) !== 46) {
      while (isSpace(source.charCodeAt(i))) i++;
      throw fail(i, `unexpected "${source[i]}" in a field path; only one path fits in {{ }}`);
    }
    i++;
    if (i === stop) throw fail(i, 'a field name is expected after "."');
  }
}

function isSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}
