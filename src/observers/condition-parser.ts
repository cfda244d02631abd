/**
 * Lexer, parser and static checks of the condition language (SPEC §5.1, docs/conditions.md).
 * Produces a small tree that `condition.ts` turns into closures and `condition-sql.ts` into SQL.
 * Input size and nesting are bounded before any recursion, so hostile text cannot exhaust the
 * stack or take long: the lexer is linear and the parser recurses at most {@link MAX_DEPTH} deep.
 */

import type { FieldModel } from "../config/types.js";
import { FraiseqlError } from "../errors.js";
import { NUMERIC_TEXT } from "./condition-values.js";
import { type FieldPath, isIdentPart, isIdentStart, type PathSegment, resolvePath } from "./paths.js";

/** Longest condition accepted, in UTF-16 code units. (Default: 4096) */
export const MAX_CONDITION_LENGTH = 4096;
/** Deepest nesting of parentheses and negations accepted. (Default: 64) */
export const MAX_CONDITION_DEPTH = 64;

/** A comparison operator. */
export type CompareOp = "==" | "!=" | ">" | ">=" | "<" | "<=";

/** A literal value: text, number, true, false or null. */
export type LiteralValue = string | number | boolean | null;

interface Span {
  readonly start: number;
  readonly end: number;
}

/** A constant. */
export interface LiteralNode extends Span {
  readonly kind: "literal";
  readonly value: LiteralValue;
}
/** A field path read from an image. */
export interface PathNode extends Span {
  readonly kind: "path";
  readonly path: FieldPath;
}
/** `path.changed()`: the old and new images of the path differ. */
export interface ChangedNode extends Span {
  readonly kind: "changed";
  readonly path: FieldPath;
}
/** `( expr )` used where a value is expected. */
export interface GroupNode extends Span {
  readonly kind: "group";
  readonly expr: BoolNode;
}
/** Anything that can stand on either side of a comparison. */
export type ValueNode = LiteralNode | PathNode | ChangedNode | GroupNode;

/** `a || b || ...` */
export interface OrNode extends Span {
  readonly kind: "or";
  readonly items: readonly BoolNode[];
}
/** `a && b && ...` */
export interface AndNode extends Span {
  readonly kind: "and";
  readonly items: readonly BoolNode[];
}
/** `!a` */
export interface NotNode extends Span {
  readonly kind: "not";
  readonly operand: BoolNode;
}
/** `a op b` */
export interface CompareNode extends Span {
  readonly kind: "compare";
  readonly op: CompareOp;
  readonly left: ValueNode;
  readonly right: ValueNode;
}
/** `path IN (literals)` or `path NOT IN (literals)` */
export interface InNode extends Span {
  readonly kind: "in";
  readonly negated: boolean;
  readonly left: PathNode;
  readonly items: readonly LiteralNode[];
}
/** A value standing alone, read by truthiness. */
export interface TestNode extends Span {
  readonly kind: "test";
  readonly value: ValueNode;
}
/** Any node that yields true or false. */
export type BoolNode = OrNode | AndNode | NotNode | CompareNode | InNode | TestNode;

type TokenType = "ident" | "string" | "number" | "op" | "eof";

interface Token {
  readonly type: TokenType;
  /** Source text for ident/op; decoded text for strings. */
  readonly text: string;
  readonly number: number;
  readonly start: number;
  readonly end: number;
}

const SINGLE_OPS = new Set(["(", ")", ",", "."]);

function syntaxError(expression: string, position: number, message: string, hint?: string): FraiseqlError {
  return new FraiseqlError("FQL_CONDITION_SYNTAX", message, {
    expression,
    position,
    ...(hint === undefined ? {} : { hint }),
  });
}

function typeError(expression: string, position: number, message: string, hint?: string): FraiseqlError {
  return new FraiseqlError("FQL_CONDITION_TYPE", message, {
    expression,
    position,
    ...(hint === undefined ? {} : { hint }),
  });
}

/** Splits a condition into tokens; linear in the length of the text. */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  const length = source.length;
  let i = 0;
  const push = (type: TokenType, text: string, start: number, number = 0): void => {
    tokens.push({ type, text, number, start, end: i });
  };
  while (i < length) {
    const c = source.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13) {
      i++;
      continue;
    }
    const start = i;
    if (isIdentStart(c)) {
      while (i < length && isIdentPart(source.charCodeAt(i))) i++;
      push("ident", source.slice(start, i), start);
      continue;
    }
    if ((c >= 48 && c <= 57) || (c === 45 && isDigit(source.charCodeAt(i + 1)))) {
      i = scanNumber(source, i);
      const text = source.slice(start, i);
      const value = Number(text);
      if (!Number.isFinite(value)) throw syntaxError(source, start, `number ${text} is out of range`);
      push("number", text, start, value);
      continue;
    }
    if (c === 39 || c === 34) {
      const [text, next] = scanString(source, i);
      i = next;
      push("string", text, start);
      continue;
    }
    const two = source.slice(i, i + 2);
    if (two === "==" || two === "!=" || two === ">=" || two === "<=" || two === "&&" || two === "||") {
      i += 2;
      push("op", two, start);
      continue;
    }
    if (two === "<>") throw syntaxError(source, start, 'unknown operator "<>"', "Use != to test inequality.");
    const one = source[i]!;
    if (one === "=") throw syntaxError(source, start, 'unknown operator "="', "Use == to test equality.");
    if (one === "&" || one === "|") {
      throw syntaxError(
        source,
        start,
        `unknown operator "${one}"`,
        `Use ${one}${one} (or ${one === "&" ? "AND" : "OR"}).`,
      );
    }
    if (one === "-") throw syntaxError(source, start, "a number is expected after -");
    if (one === ">" || one === "<" || one === "!" || SINGLE_OPS.has(one)) {
      i++;
      push("op", one, start);
      continue;
    }
    const shown = String.fromCodePoint(source.codePointAt(i) ?? c);
    throw syntaxError(source, start, `unexpected character ${JSON.stringify(shown)}`);
  }
  tokens.push({ type: "eof", text: "", number: 0, start: length, end: length });
  return tokens;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function scanNumber(source: string, start: number): number {
  let i = start;
  if (source.charCodeAt(i) === 45) i++;
  while (isDigit(source.charCodeAt(i))) i++;
  if (source.charCodeAt(i) === 46) {
    if (!isDigit(source.charCodeAt(i + 1)))
      throw syntaxError(source, i + 1, "digits are expected after the decimal point");
    i++;
    while (isDigit(source.charCodeAt(i))) i++;
  }
  const e = source.charCodeAt(i);
  if (e === 101 || e === 69) {
    let j = i + 1;
    const sign = source.charCodeAt(j);
    if (sign === 43 || sign === 45) j++;
    if (!isDigit(source.charCodeAt(j))) throw syntaxError(source, j, "digits are expected in the exponent");
    while (isDigit(source.charCodeAt(j))) j++;
    i = j;
  }
  if (i < source.length && isIdentPart(source.charCodeAt(i))) {
    throw syntaxError(
      source,
      i,
      "a number cannot run into a name",
      "Separate them with a space or an operator.",
    );
  }
  return i;
}

const ESCAPES: Readonly<Record<string, string>> = {
  "\\": "\\",
  "'": "'",
  '"': '"',
  "/": "/",
  n: "\n",
  r: "\r",
  t: "\t",
  b: "\b",
  f: "\f",
};

/** Reads a quoted string at `start`; returns its decoded text and the index after the closing quote. */
function scanString(source: string, start: number): [string, number] {
  const quote = source.charCodeAt(start);
  let i = start + 1;
  let text = "";
  let chunkStart = i;
  while (i < source.length) {
    const c = source.charCodeAt(i);
    if (c === quote) return [text + source.slice(chunkStart, i), i + 1];
    if (c === 92) {
      text += source.slice(chunkStart, i);
      const escaped = source[i + 1];
      if (escaped === "u") {
        const hex = source.slice(i + 2, i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw syntaxError(source, i, "\\u needs four hexadecimal digits");
        text += String.fromCharCode(Number.parseInt(hex, 16));
        i += 6;
      } else if (escaped !== undefined && Object.hasOwn(ESCAPES, escaped)) {
        text += ESCAPES[escaped];
        i += 2;
      } else {
        throw syntaxError(
          source,
          i,
          `unknown escape \\${escaped ?? ""}`,
          "Known escapes: \\\\ \\' \\\" \\n \\r \\t \\b \\f \\/ \\uXXXX.",
        );
      }
      chunkStart = i;
      continue;
    }
    i++;
  }
  throw syntaxError(source, start, "unterminated string", `Close it with ${String.fromCharCode(quote)}.`);
}

function keyword(token: Token, word: string): boolean {
  return token.type === "ident" && token.text.length === word.length && token.text.toLowerCase() === word;
}

const RESERVED = ["and", "or", "not", "in", "true", "false", "null"];

function describeToken(token: Token): string {
  if (token.type === "eof") return "the end of the expression";
  if (token.type === "string") return "a string";
  return `"${token.text}"`;
}

/** Options of {@link parseCondition}. */
export interface ParseOptions {
  /** Declared fields; enables unknown-field and declared-type checks. (Default: unchecked) */
  readonly fields?: readonly FieldModel[] | undefined;
}

/** Parses and statically checks a condition. Throws FraiseqlError with a position on any problem. */
export function parseCondition(source: string, options: ParseOptions = {}): BoolNode {
  if (typeof source !== "string") {
    throw new FraiseqlError("FQL_CONDITION_SYNTAX", "a condition must be a string", {
      expression: String(source),
    });
  }
  if (source.length > MAX_CONDITION_LENGTH) {
    throw new FraiseqlError(
      "FQL_CONDITION_LIMIT",
      `condition is ${source.length} characters long; the limit is ${MAX_CONDITION_LENGTH}`,
      {
        expression: `${source.slice(0, 60)}...`,
        position: 60,
        hint: "Split the logic across observer and action conditions.",
      },
    );
  }
  const parser = new Parser(source, tokenize(source), options.fields);
  return parser.parse();
}

class Parser {
  private index = 0;
  private depth = 0;

  constructor(
    private readonly source: string,
    private readonly tokens: readonly Token[],
    private readonly fields: readonly FieldModel[] | undefined,
  ) {}

  parse(): BoolNode {
    const first = this.peek();
    if (first.type === "eof")
      throw syntaxError(this.source, 0, "the condition is empty", 'Write "true" to match every event.');
    const expr = this.parseOr();
    const next = this.peek();
    if (next.type !== "eof") {
      const hint = isCompare(next) ? "Comparisons do not chain; combine them with && or ||." : undefined;
      throw syntaxError(
        this.source,
        next.start,
        `expected && or || or the end, found ${describeToken(next)}`,
        hint,
      );
    }
    return expr;
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.index + offset, this.tokens.length - 1)]!;
  }

  private advance(): Token {
    const token = this.peek();
    if (this.index < this.tokens.length - 1) this.index++;
    return token;
  }

  private isOp(token: Token, op: string): boolean {
    return token.type === "op" && token.text === op;
  }

  private expectOp(op: string, what: string): Token {
    const token = this.peek();
    if (!this.isOp(token, op)) {
      throw syntaxError(this.source, token.start, `expected ${what}, found ${describeToken(token)}`);
    }
    return this.advance();
  }

  private enter(token: Token): void {
    this.depth++;
    if (this.depth > MAX_CONDITION_DEPTH) {
      throw new FraiseqlError(
        "FQL_CONDITION_LIMIT",
        `condition nests more than ${MAX_CONDITION_DEPTH} parentheses or negations deep`,
        { expression: this.source, position: token.start },
      );
    }
  }

  private parseOr(): BoolNode {
    const first = this.parseAnd();
    const items = [first];
    for (;;) {
      const token = this.peek();
      if (!(this.isOp(token, "||") || keyword(token, "or"))) break;
      this.advance();
      items.push(this.parseAnd());
    }
    if (items.length === 1) return first;
    return { kind: "or", items, start: first.start, end: items[items.length - 1]!.end };
  }

  private parseAnd(): BoolNode {
    const first = this.parseNot();
    const items = [first];
    for (;;) {
      const token = this.peek();
      if (!(this.isOp(token, "&&") || keyword(token, "and"))) break;
      this.advance();
      items.push(this.parseNot());
    }
    if (items.length === 1) return first;
    return { kind: "and", items, start: first.start, end: items[items.length - 1]!.end };
  }

  private parseNot(): BoolNode {
    const token = this.peek();
    if (this.isOp(token, "!") || keyword(token, "not")) {
      this.enter(token);
      this.advance();
      const operand = this.parseNot();
      this.depth--;
      return { kind: "not", operand, start: token.start, end: operand.end };
    }
    return this.parseTest();
  }

  private parseTest(): BoolNode {
    const left = this.parseValue();
    const token = this.peek();
    if (isCompare(token)) {
      this.advance();
      const right = this.parseValue();
      const node: CompareNode = {
        kind: "compare",
        op: token.text as CompareOp,
        left,
        right,
        start: left.start,
        end: right.end,
      };
      this.checkCompare(node, token);
      return node;
    }
    let negated = false;
    if (keyword(token, "not")) {
      if (!keyword(this.peek(1), "in")) {
        throw syntaxError(
          this.source,
          token.start,
          "NOT here must be followed by IN",
          "To negate a test, put NOT before it.",
        );
      }
      negated = true;
      this.advance();
    }
    if (keyword(this.peek(), "in")) {
      const inToken = this.advance();
      if (left.kind !== "path") {
        throw typeError(
          this.source,
          left.start,
          `the left side of ${negated ? "NOT IN" : "IN"} must be a field path`,
          "Write the field first: country IN ('DE', 'FR').",
        );
      }
      this.expectOp("(", `"(" after ${negated ? "NOT IN" : "IN"}`);
      const items: LiteralNode[] = [];
      for (;;) {
        const item = this.peek();
        const literal = this.literalAt(item);
        if (literal === undefined) {
          throw syntaxError(
            this.source,
            item.start,
            `expected a literal in the IN list, found ${describeToken(item)}`,
          );
        }
        this.advance();
        items.push(literal);
        this.checkDeclared(left, literal, "==", inToken);
        const next = this.peek();
        if (this.isOp(next, ",")) {
          this.advance();
          continue;
        }
        break;
      }
      const close = this.expectOp(")", '"," or ")" in the IN list');
      return { kind: "in", negated, left, items, start: left.start, end: close.end };
    }
    return { kind: "test", value: left, start: left.start, end: left.end };
  }

  private literalAt(token: Token): LiteralNode | undefined {
    const at = { start: token.start, end: token.end };
    if (token.type === "string") return { kind: "literal", value: token.text, ...at };
    if (token.type === "number") return { kind: "literal", value: token.number, ...at };
    if (keyword(token, "true")) return { kind: "literal", value: true, ...at };
    if (keyword(token, "false")) return { kind: "literal", value: false, ...at };
    if (keyword(token, "null")) return { kind: "literal", value: null, ...at };
    return undefined;
  }

  private parseValue(): ValueNode {
    const token = this.peek();
    const literal = this.literalAt(token);
    if (literal !== undefined) {
      this.advance();
      return literal;
    }
    if (this.isOp(token, "(")) {
      this.enter(token);
      this.advance();
      if (this.isOp(this.peek(), ")")) throw syntaxError(this.source, this.peek().start, "empty parentheses");
      const expr = this.parseOr();
      const close = this.expectOp(")", '")"');
      this.depth--;
      return { kind: "group", expr, start: token.start, end: close.end };
    }
    if (token.type === "ident") {
      if (RESERVED.includes(token.text.toLowerCase())) {
        throw syntaxError(
          this.source,
          token.start,
          `expected a value, found the keyword ${token.text}`,
          `A field named ${token.text} is written new.${token.text} (or old.${token.text}).`,
        );
      }
      return this.parsePath();
    }
    const hint = this.isOp(token, "!")
      ? undefined
      : "A value is a field, a 'text', a number, true, false, null or ( ... ).";
    throw syntaxError(this.source, token.start, `expected a value, found ${describeToken(token)}`, hint);
  }

  private parsePath(): PathNode | ChangedNode {
    const segments: PathSegment[] = [];
    const first = this.advance();
    segments.push({ name: first.text, start: first.start, end: first.end });
    while (this.isOp(this.peek(), ".")) {
      const dot = this.advance();
      const name = this.peek();
      if (name.type !== "ident") {
        throw syntaxError(
          this.source,
          name.start,
          `expected a name after ".", found ${describeToken(name)}`,
          name.type === "number" ? "Array elements cannot be addressed; compare the whole array." : undefined,
        );
      }
      this.advance();
      if (this.isOp(this.peek(), "(")) {
        return this.parseMethod(segments, dot, name);
      }
      segments.push({ name: name.text, start: name.start, end: name.end });
    }
    const path = this.resolve(segments);
    return { kind: "path", path, start: path.start, end: path.end };
  }

  private parseMethod(segments: PathSegment[], dot: Token, name: Token): ChangedNode {
    if (name.text !== "changed") {
      throw syntaxError(
        this.source,
        name.start,
        `unknown method ${name.text}()`,
        "The only method is changed().",
      );
    }
    this.advance();
    const close = this.peek();
    if (!this.isOp(close, ")")) throw syntaxError(this.source, close.start, "changed() takes no arguments");
    this.advance();
    const path = this.resolve(segments);
    if (path.image !== "current") {
      throw typeError(
        this.source,
        dot.start,
        `changed() compares the old and new images; it cannot apply to ${path.text}`,
        `Write ${path.field}${path.keys.map((k) => `.${k}`).join("")}.changed().`,
      );
    }
    return { kind: "changed", path, start: path.start, end: close.end };
  }

  private resolve(segments: readonly PathSegment[]): FieldPath {
    return resolvePath(segments, {
      fields: this.fields,
      expression: this.source,
      codes: {
        syntax: "FQL_CONDITION_SYNTAX",
        unknownField: "FQL_CONDITION_UNKNOWN_FIELD",
        type: "FQL_CONDITION_TYPE",
      },
    });
  }

  /** The statically visible type misuses of a comparison (docs/conditions.md, "Type errors"). */
  private checkCompare(node: CompareNode, opToken: Token): void {
    const { left, right, op } = node;
    const ordering = op !== "==" && op !== "!=";
    if (left.kind === "literal" && right.kind === "literal") {
      throw typeError(
        this.source,
        left.start,
        "this comparison has a constant on both sides",
        "Compare a field with a value.",
      );
    }
    for (const side of [left, right]) {
      const boolean = side.kind === "changed" || side.kind === "group";
      if (
        ordering &&
        (boolean || (side.kind === "literal" && (typeof side.value === "boolean" || side.value === null)))
      ) {
        const what = side.kind === "literal" ? String(side.value) : boolean ? "a true/false test" : "";
        throw typeError(
          this.source,
          side.kind === "literal" ? side.start : opToken.start,
          `the operator ${op} orders numbers and text; it cannot compare ${what}`,
          side.kind === "literal" && side.value === null
            ? "Use == null or != null to test for null."
            : undefined,
        );
      }
    }
    for (const [a, b] of [
      [left, right],
      [right, left],
    ] as const) {
      if (
        (a.kind === "changed" || a.kind === "group") &&
        b.kind === "literal" &&
        typeof b.value !== "boolean"
      ) {
        throw typeError(
          this.source,
          b.start,
          `a true/false test is compared with ${b.value === null ? "null" : typeof b.value === "number" ? "a number" : "text"}; this is never true`,
          "Compare it with true or false.",
        );
      }
      if (a.kind === "path" && b.kind === "literal") this.checkDeclared(a, b, op, opToken);
    }
    if (ordering) {
      for (const side of [left, right]) {
        if (side.kind === "path" && side.path.declared?.type === "Boolean" && side.path.keys.length === 0) {
          throw typeError(
            this.source,
            opToken.start,
            `${side.path.text} is Boolean; the operator ${op} orders numbers and text`,
          );
        }
      }
    }
  }

  /** Literal against a field of a declared type: refuses comparisons that can never hold. */
  private checkDeclared(path: PathNode, literal: LiteralNode, op: string, opToken: Token): void {
    const declared = path.path.declared;
    if (declared === undefined || path.path.keys.length > 0 || literal.value === null) return;
    const value = literal.value;
    const ordering = op !== "==" && op !== "!=";
    const name = path.path.text;
    const fail = (what: string): never => {
      throw typeError(this.source, literal.start, `${name} is ${declared.type}; ${what}`);
    };
    switch (declared.type) {
      case "Boolean":
        if (ordering) {
          throw typeError(
            this.source,
            opToken.start,
            `${name} is Boolean; the operator ${op} orders numbers and text`,
          );
        }
        if (typeof value !== "boolean") fail("compare it with true or false");
        return;
      case "Int":
      case "Float":
        if (typeof value === "boolean") fail("its values are numbers, never true or false");
        if (typeof value === "string" && !NUMERIC_TEXT.test(value)) {
          fail(
            `its values are numbers, which never ${ordering ? "order against" : "equal"} the text '${value}'`,
          );
        }
        return;
      case "String":
      case "ID":
      case "DateTime":
        if (typeof value === "boolean") fail("its values are text, never true or false");
        return;
      case "JSON":
        return;
    }
  }
}

function isCompare(token: Token): boolean {
  return (
    token.type === "op" &&
    (token.text === "==" ||
      token.text === "!=" ||
      token.text === ">" ||
      token.text === ">=" ||
      token.text === "<" ||
      token.text === "<=")
  );
}
