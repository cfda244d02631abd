/**
 * Translates a parsed condition into a PostgreSQL boolean expression over the current row, for
 * `SELECT * FROM <table> WHERE <sql>`: the answer to "which rows would this condition match?".
 *
 * The SQL follows the value rules of `condition-values.ts` exactly, whatever the column types:
 * every value is read through `to_jsonb(column)`, so text, numeric, integer, double precision,
 * boolean and jsonb columns all compare the way the evaluator compares the row's JSON image.
 * Every emitted boolean is two-valued (never NULL), so `NOT` behaves like the evaluator's `!`.
 *
 * Parts that read the old image cannot be decided on current rows; they become TRUE (FALSE
 * under an odd number of negations) so the result lists every row that could match, and each
 * gets a note in words.
 */

import type { FieldModel } from "../config/types.js";
import type {
  BoolNode,
  CompareNode,
  CompareOp,
  LiteralNode,
  LiteralValue,
  ValueNode,
} from "./condition-parser.js";
import { NUMERIC_TEXT } from "./condition-values.js";
import type { FieldPath } from "./paths.js";

/** Options of {@link conditionToSql}. */
export interface SqlOptions {
  /** Qualifies every column as `alias."column"`. (Default: unqualified) */
  readonly tableAlias?: string | undefined;
  /** Declared fields; accepted for symmetry with compileCondition. The SQL does not depend on them. */
  readonly fields?: readonly FieldModel[] | undefined;
}

/** The SQL form of a condition; see CompiledCondition.toSql. */
export interface ConditionSqlResult {
  sql: string;
  exact: boolean;
  notes: string[];
}

/** Quotes an identifier for PostgreSQL: `"name"`, inner quotes doubled. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes a text literal for PostgreSQL (standard_conforming_strings on, the default since 9.1). */
export function quoteText(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

const NUMERIC_PATTERN = quoteText(NUMERIC_TEXT.source);

// The literal a JavaScript number stands for: the evaluator compares doubles, so the SQL
// compares against the double's shortest decimal form, not the digits as written.
function numberSql(value: number): string {
  const text = String(value);
  return value < 0 ? `(${text})` : text;
}

function jsonbLiteral(value: LiteralValue): string {
  return `${quoteText(JSON.stringify(value))}::jsonb`;
}

function reads(node: ValueNode | BoolNode, image: "old"): boolean {
  switch (node.kind) {
    case "literal":
      return false;
    case "path":
      return node.path.image === image;
    case "changed":
      return true;
    case "group":
      return reads(node.expr, image);
    case "or":
    case "and":
      return node.items.some((item) => reads(item, image));
    case "not":
      return reads(node.operand, image);
    case "compare":
      return reads(node.left, image) || reads(node.right, image);
    case "in":
      return reads(node.left, image);
    case "test":
      return reads(node.value, image);
  }
}

/** True when any part of the condition reads the old image. */
export function readsOldImage(node: BoolNode): boolean {
  return reads(node, "old");
}

/** Builds the SQL of a parsed condition. */
export function conditionToSql(tree: BoolNode, source: string, options: SqlOptions = {}): ConditionSqlResult {
  const writer = new SqlWriter(source, options.tableAlias);
  const sql = writer.bool(tree, true);
  return { sql, exact: writer.notes.length === 0, notes: writer.notes };
}

class SqlWriter {
  readonly notes: string[] = [];
  private readonly qualifier: string;

  constructor(
    private readonly source: string,
    alias: string | undefined,
  ) {
    this.qualifier = alias === undefined || alias === "" ? "" : `${quoteIdent(alias)}.`;
  }

  bool(node: BoolNode, positive: boolean): string {
    switch (node.kind) {
      case "or":
      case "and": {
        const joiner = node.kind === "or" ? " OR " : " AND ";
        return `(${node.items.map((item) => this.bool(item, positive)).join(joiner)})`;
      }
      case "not":
        return `NOT ${this.bool(node.operand, !positive)}`;
      case "test":
        if (node.value.kind === "group") return this.bool(node.value.expr, positive);
        if (reads(node, "old")) return this.approximate(node, positive);
        return this.truthy(node.value);
      case "compare":
        if (reads(node, "old")) return this.approximate(node, positive);
        return this.compare(node);
      case "in": {
        if (reads(node, "old")) return this.approximate(node, positive);
        const value = this.path(node.left.path);
        const sql = this.inList(value, node.items);
        return node.negated ? `NOT ${sql}` : sql;
      }
    }
  }

  private approximate(node: BoolNode, positive: boolean): string {
    const text = this.source.slice(node.start, node.end);
    const taken = positive ? "TRUE" : "FALSE";
    const changed = node.kind === "test" && node.value.kind === "changed" ? node.value.path : undefined;
    const meaning = changed
      ? `true when ${changed.text} differs between the old and new row`
      : "reads the row as it was before the change";
    this.notes.push(`${text}: ${meaning}; cannot be checked on current rows (taken as ${taken} here)`);
    return taken;
  }

  private path(path: FieldPath): string {
    const column = `to_jsonb(${this.qualifier}${quoteIdent(path.field)})`;
    if (path.keys.length === 0) return column;
    return `(${column}${path.keys.map((key) => ` -> ${quoteText(key)}`).join("")})`;
  }

  /** A value as SQL jsonb (possibly SQL NULL or jsonb null), or a boolean expression for tests. */
  private truthy(value: ValueNode): string {
    if (value.kind === "literal") return isTruthyLiteral(value.value) ? "TRUE" : "FALSE";
    if (value.kind === "path") {
      const v = this.path(value.path);
      return `COALESCE(${v} NOT IN ('null'::jsonb, 'false'::jsonb, '0'::jsonb, '""'::jsonb), FALSE)`;
    }
    // group and changed are handled by the caller (group recurses, changed reads the old image)
    return "FALSE";
  }

  private compare(node: CompareNode): string {
    const { left, right, op } = node;
    if (left.kind === "literal" && right.kind !== "literal") {
      return this.compare({ ...node, left: right, right: left, op: flip(op) });
    }
    if (left.kind === "path" && right.kind === "literal") {
      const value = this.path(left.path);
      if (op === "==") return equalsLiteral(value, right.value);
      if (op === "!=") return `NOT ${equalsLiteral(value, right.value)}`;
      return orderLiteral(value, op, right.value);
    }
    if (isBooleanValue(left) && right.kind === "literal") {
      // the parser only lets true/false reach here, and only with == and !=
      const sqlOp = op === "==" ? "=" : "<>";
      return `(${this.booleanSql(left)} ${sqlOp} ${right.value === true ? "TRUE" : "FALSE"})`;
    }
    if (isBooleanValue(left) && isBooleanValue(right)) {
      return `(${this.booleanSql(left)} ${op === "==" ? "=" : "<>"} ${this.booleanSql(right)})`;
    }
    if (left.kind === "path" && right.kind === "path") {
      const a = this.path(left.path);
      const b = this.path(right.path);
      if (op === "==") return equalsDynamic(a, b);
      if (op === "!=") return `NOT ${equalsDynamic(a, b)}`;
      return orderDynamic(a, op, b);
    }
    // a path against a true/false test
    const path = left.kind === "path" ? left : (right as ValueNode & { kind: "path" });
    const test = left.kind === "path" ? right : left;
    const equal = `COALESCE(${this.path(path.path)} = to_jsonb(${this.booleanSql(test)}), FALSE)`;
    return op === "!=" ? `NOT ${equal}` : equal;
  }

  private booleanSql(value: ValueNode): string {
    if (value.kind === "group") return this.bool(value.expr, true);
    // changed() reads the old image; the caller has already replaced such comparisons
    return "FALSE";
  }

  private inList(value: string, items: readonly LiteralNode[]): string {
    const plain = items.every((item) => typeof item.value !== "number" && !isNumericText(item.value));
    if (plain && items.length > 1) {
      const hasNull = items.some((item) => item.value === null);
      const others = items.filter((item) => item.value !== null).map((item) => jsonbLiteral(item.value));
      const list = others.length > 0 ? `COALESCE(${value} IN (${others.join(", ")}), FALSE)` : "FALSE";
      return hasNull ? `(${equalsLiteral(value, null)} OR ${list})` : list;
    }
    const parts = items.map((item) => equalsLiteral(value, item.value));
    return parts.length === 1 ? parts[0]! : `(${parts.join(" OR ")})`;
  }
}

function isBooleanValue(value: ValueNode): boolean {
  return value.kind === "group" || value.kind === "changed";
}

function isTruthyLiteral(value: LiteralValue): boolean {
  return !(value === null || value === false || value === 0 || value === "");
}

function isNumericText(value: LiteralValue): value is string {
  return typeof value === "string" && NUMERIC_TEXT.test(value);
}

function flip(op: CompareOp): CompareOp {
  switch (op) {
    case ">":
      return "<";
    case "<":
      return ">";
    case ">=":
      return "<=";
    case "<=":
      return ">=";
    default:
      return op;
  }
}

/** The text of a jsonb string. */
function text(value: string): string {
  return `(${value} #>> '{}')`;
}

/** A jsonb number, or a jsonb string holding numeric text, as numeric; NULL otherwise. */
function numeric(value: string): string {
  return (
    `(CASE jsonb_typeof(${value}) WHEN 'number' THEN (${value})::numeric` +
    ` WHEN 'string' THEN CASE WHEN ${text(value)} ~ ${NUMERIC_PATTERN} THEN ${text(value)}::numeric END END)`
  );
}

function equalsLiteral(value: string, literal: LiteralValue): string {
  if (literal === null) return `COALESCE(${value} = 'null'::jsonb, TRUE)`;
  if (typeof literal === "boolean") return `COALESCE(${value} = ${jsonbLiteral(literal)}, FALSE)`;
  if (typeof literal === "number") return `COALESCE(${numeric(value)} = ${numberSql(literal)}, FALSE)`;
  if (isNumericText(literal)) {
    return (
      `(CASE jsonb_typeof(${value}) WHEN 'string' THEN ${text(value)} = ${quoteText(literal)}` +
      ` WHEN 'number' THEN (${value})::numeric = ${numberSql(Number(literal))} ELSE FALSE END)`
    );
  }
  return `COALESCE(${value} = ${jsonbLiteral(literal)}, FALSE)`;
}

function orderLiteral(value: string, op: CompareOp, literal: LiteralValue): string {
  if (typeof literal === "number") return `COALESCE(${numeric(value)} ${op} ${numberSql(literal)}, FALSE)`;
  if (typeof literal !== "string") return "FALSE";
  const textCompare = `${text(value)} COLLATE "C" ${op} ${quoteText(literal)}`;
  if (isNumericText(literal)) {
    return (
      `(CASE jsonb_typeof(${value}) WHEN 'string' THEN ${textCompare}` +
      ` WHEN 'number' THEN (${value})::numeric ${op} ${numberSql(Number(literal))} ELSE FALSE END)`
    );
  }
  return `(CASE jsonb_typeof(${value}) WHEN 'string' THEN ${textCompare} ELSE FALSE END)`;
}

function equalsDynamic(a: string, b: string): string {
  const x = `NULLIF(${a}, 'null'::jsonb)`;
  const y = `NULLIF(${b}, 'null'::jsonb)`;
  return (
    `(CASE WHEN ${x} IS NULL OR ${y} IS NULL THEN ${x} IS NULL AND ${y} IS NULL` +
    ` WHEN jsonb_typeof(${x}) = 'number' AND jsonb_typeof(${y}) = 'string'` +
    ` THEN COALESCE((${x})::numeric = ${numeric(y)}, FALSE)` +
    ` WHEN jsonb_typeof(${x}) = 'string' AND jsonb_typeof(${y}) = 'number'` +
    ` THEN COALESCE(${numeric(x)} = (${y})::numeric, FALSE)` +
    ` ELSE ${x} = ${y} END)`
  );
}

function orderDynamic(a: string, op: CompareOp, b: string): string {
  return (
    `(CASE WHEN jsonb_typeof(${a}) = 'string' AND jsonb_typeof(${b}) = 'string'` +
    ` THEN ${text(a)} COLLATE "C" ${op} ${text(b)}` +
    ` WHEN jsonb_typeof(${a}) IN ('number', 'string') AND jsonb_typeof(${b}) IN ('number', 'string')` +
    ` THEN COALESCE(${numeric(a)} ${op} ${numeric(b)}, FALSE)` +
    ` ELSE FALSE END)`
  );
}
