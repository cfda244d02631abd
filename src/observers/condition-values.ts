/**
 * The value rules of conditions: equality, ordering and truthiness over the JSON values of a row
 * (`to_jsonb(row)`), as documented in docs/conditions.md. `condition-sql.ts` implements the same
 * rules in SQL; a property test keeps the two in agreement.
 */

/**
 * The text form of a number that PostgreSQL `numeric` prints and that conditions accept as a
 * number when the other side is one: optional minus, digits, optional fraction. No exponent,
 * no spaces, no `+`, no `NaN`/`Infinity`.
 */
export const NUMERIC_TEXT = /^-?[0-9]+(\.[0-9]+)?$/;

/** True for a JSON number, or a bigint some drivers produce for `int8`. */
function isNumber(value: unknown): value is number | bigint {
  return typeof value === "number" || typeof value === "bigint";
}

/** The number `value` stands for when compared with a number: a number, or a numeric string. */
function numericOperand(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "string" && NUMERIC_TEXT.test(value)) return Number(value);
  return undefined;
}

/**
 * `==` of conditions: null-safe (null equals only null); numbers numerically, a numeric string
 * counting as a number when the other side is a number; strings, booleans by value; JSON
 * objects and arrays deeply; anything else unequal.
 */
export function valuesEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  // undefined (a missing field) and null are the same null
  if (a === null || a === undefined || b === null || b === undefined) {
    return (a === null || a === undefined) && (b === null || b === undefined);
  }
  const left = typeof a;
  const right = typeof b;
  if (left === "number" || left === "bigint") {
    if (right === "number" || right === "bigint")
      return sameNumber(a as number | bigint, b as number | bigint);
    if (right === "string") {
      const n = numericOperand(b);
      return n !== undefined && Number(a) === n;
    }
    return false;
  }
  if (right === "number" || right === "bigint") {
    if (left === "string") {
      const n = numericOperand(a);
      return n !== undefined && n === Number(b);
    }
    return false;
  }
  // two distinct strings or booleans, or a scalar against a container
  if (left !== "object" || right !== "object") return false;
  return deepEqual(a, b);
}

function sameNumber(a: number | bigint, b: number | bigint): boolean {
  if (typeof a === "bigint" && typeof b === "bigint") return a === b;
  return Number(a) === Number(b);
}

/**
 * Structural equality without type coercion: the `IS DISTINCT FROM` of `x.changed()` and of JSON
 * values. Objects compare by their own keys in any order, arrays element by element. Iterative,
 * so deeply nested JSON cannot overflow the stack.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    return shallowEqual(a, b, []);
  }
  const pending: unknown[] = [a, b];
  while (pending.length > 0) {
    const right = pending.pop();
    const left = pending.pop();
    if (!shallowEqual(left, right, pending)) return false;
  }
  return true;
}

// Compares scalars directly; for two containers of the same shape, queues their children.
function shallowEqual(a: unknown, b: unknown, pending: unknown[]): boolean {
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (a === b) return true;
  if (a === null || b === null) return false;
  if (isNumber(a) && isNumber(b)) return sameNumber(a, b);
  if (typeof a !== "object" || typeof b !== "object") return false;
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  const aIsArray = Array.isArray(a);
  if (aIsArray !== Array.isArray(b)) return false;
  if (aIsArray) {
    const left = a as unknown[];
    const right = b as unknown[];
    if (left.length !== right.length) return false;
    for (let i = 0; i < left.length; i++) pending.push(left[i], right[i]);
    return true;
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const leftKeys = Object.keys(left).filter((k) => left[k] !== undefined);
  let rightCount = 0;
  for (const k in right) if (Object.hasOwn(right, k) && right[k] !== undefined) rightCount++;
  if (leftKeys.length !== rightCount) return false;
  for (const key of leftKeys) {
    if (!Object.hasOwn(right, key)) return false;
    pending.push(left[key], right[key]);
  }
  return true;
}

/**
 * Orders two values for `<`, `<=`, `>`, `>=`: negative, zero or positive, or undefined when they
 * do not order (null, booleans, objects, arrays, a number against a non-numeric string). Numbers
 * order numerically (a numeric string counting as a number against a number); strings by Unicode
 * code point, as PostgreSQL's `COLLATE "C"` does on UTF-8.
 */
export function compareValues(a: unknown, b: unknown): number | undefined {
  if (isNumber(a)) {
    const right = isNumber(b) ? Number(b) : numericOperand(b);
    if (right === undefined) return undefined;
    const left = Number(a);
    return left < right ? -1 : left > right ? 1 : 0;
  }
  if (typeof a === "string") {
    if (typeof b === "string") return compareCodePoints(a, b);
    if (isNumber(b)) {
      const left = numericOperand(a);
      if (left === undefined) return undefined;
      const right = Number(b);
      return left < right ? -1 : left > right ? 1 : 0;
    }
  }
  return undefined;
}

/**
 * Compares strings by code point. JavaScript's `<` compares UTF-16 code units, which puts
 * characters above U+FFFF (surrogate pairs) before U+E000..U+FFFF; shifting surrogates above
 * that range restores code point order.
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x += x >= 0xe000 ? -0x800 : 0x2000;
    if (y >= 0xd800) y += y >= 0xe000 ? -0x800 : 0x2000;
    return x - y;
  }
  return a.length - b.length;
}

/** A bare value as a condition: false for null, false, 0 and "", true for anything else. */
export function isTruthy(value: unknown): boolean {
  return !(
    value === null ||
    value === undefined ||
    value === false ||
    value === 0 ||
    value === "" ||
    (typeof value === "bigint" && value === 0n)
  );
}
