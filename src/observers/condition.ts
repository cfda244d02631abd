/**
 * The condition language of observers and actions (SPEC §5.1; reference: docs/conditions.md).
 *
 * ```ts
 * const shipped = compileCondition("status.changed() && status == 'shipped'", { fields });
 * shipped.evaluate({ event: "UPDATE", old: { status: "paid" }, new: { status: "shipped" } }); // true
 * shipped.toSql().sql; // paste after SELECT * FROM orders WHERE
 * ```
 *
 * A condition is compiled once into closures: evaluation walks no tree, parses nothing and
 * allocates little, since it runs for every captured event.
 */

import type { EventKind, FieldModel } from "../config/types.js";
import {
  type BoolNode,
  type CompareOp,
  MAX_CONDITION_DEPTH,
  MAX_CONDITION_LENGTH,
  parseCondition,
  type ValueNode,
} from "./condition-parser.js";
import { conditionToSql, readsOldImage } from "./condition-sql.js";
import { compareValues, deepEqual, isTruthy, valuesEqual } from "./condition-values.js";
import { compileReader } from "./paths.js";

export { MAX_CONDITION_DEPTH, MAX_CONDITION_LENGTH };

/** One row change as conditions see it. A missing image (`old` of an INSERT, `new` of a DELETE) is null. */
export interface ConditionContext {
  event: EventKind;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}

/** Options of {@link compileCondition}. */
export interface CompileOptions {
  /** Declared fields of the entity; when given, unknown top-level fields are FQL_CONDITION_UNKNOWN_FIELD errors
   *  naming the fields the entity has and suggesting the nearest ("did you mean status?"), and comparisons that
   *  can never hold for the declared type are FQL_CONDITION_TYPE errors. (Default: no field checks) */
  fields?: readonly FieldModel[];
}

/** A condition compiled once, evaluated per event. */
export interface CompiledCondition {
  readonly source: string;
  /** Top-level field names referenced, in order of first appearance. */
  readonly fields: readonly string[];
  /** True when the condition reads the old image (changed(), old.x, x.old). */
  readonly usesOldImage: boolean;
  /** Decides the condition for one change. Never throws. */
  evaluate(ctx: ConditionContext): boolean;
  /**
   * PostgreSQL boolean expression over the current row, for `SELECT * FROM t WHERE <sql>`. Columns are
   * unqualified unless `tableAlias` is given. Agrees with `evaluate` on the row as the new image for every
   * condition that does not read the old image; parts that do are approximated (see ConditionSql).
   */
  toSql(options?: { tableAlias?: string; fields?: readonly FieldModel[] }): ConditionSql;
}

/** The SQL form of a condition. */
export interface ConditionSql {
  sql: string;
  /** true when the whole condition is expressible on current rows */
  exact: boolean;
  /** words for the parts that depend on the old image */
  notes: string[];
}

type Evaluator = (ctx: ConditionContext) => boolean;
type Reader = (ctx: ConditionContext) => unknown;

/**
 * Parses, checks and compiles a condition. Throws FraiseqlError FQL_CONDITION_SYNTAX,
 * FQL_CONDITION_UNKNOWN_FIELD, FQL_CONDITION_TYPE or FQL_CONDITION_LIMIT, each with the
 * expression and a 0-based position.
 */
export function compileCondition(source: string, options: CompileOptions = {}): CompiledCondition {
  const tree = parseCondition(source, { fields: options.fields });
  const evaluate = compileBool(tree);
  const fields = Object.freeze(collectFields(tree, []));
  const usesOldImage = readsOldImage(tree);
  return Object.freeze({
    source,
    fields,
    usesOldImage,
    evaluate,
    toSql(sqlOptions: { tableAlias?: string; fields?: readonly FieldModel[] } = {}): ConditionSql {
      return conditionToSql(tree, source, sqlOptions);
    },
  });
}

function collectFields(node: BoolNode | ValueNode, into: string[]): string[] {
  switch (node.kind) {
    case "literal":
      break;
    case "path":
    case "changed":
      if (!into.includes(node.path.field)) into.push(node.path.field);
      break;
    case "group":
      collectFields(node.expr, into);
      break;
    case "or":
    case "and":
      for (const item of node.items) collectFields(item, into);
      break;
    case "not":
      collectFields(node.operand, into);
      break;
    case "compare":
      collectFields(node.left, into);
      collectFields(node.right, into);
      break;
    case "in":
      collectFields(node.left, into);
      break;
    case "test":
      collectFields(node.value, into);
      break;
  }
  return into;
}

function compileBool(node: BoolNode): Evaluator {
  switch (node.kind) {
    case "or": {
      const items = node.items.map(compileBool);
      return (ctx) => {
        for (const item of items) if (item(ctx)) return true;
        return false;
      };
    }
    case "and": {
      const items = node.items.map(compileBool);
      return (ctx) => {
        for (const item of items) if (!item(ctx)) return false;
        return true;
      };
    }
    case "not": {
      const operand = compileBool(node.operand);
      return (ctx) => !operand(ctx);
    }
    case "compare":
      return compileCompare(node.op, node.left, node.right);
    case "in": {
      const read = compileValue(node.left);
      const items = node.items.map((item) => item.value);
      const negated = node.negated;
      return (ctx) => {
        const value = read(ctx);
        for (const item of items) if (valuesEqual(value, item)) return !negated;
        return negated;
      };
    }
    case "test": {
      const value = node.value;
      if (value.kind === "group") return compileBool(value.expr);
      if (value.kind === "changed") return compileChanged(value);
      if (value.kind === "literal") {
        const constant = isTruthy(value.value);
        return () => constant;
      }
      const read = compileValue(value);
      return (ctx) => isTruthy(read(ctx));
    }
  }
}

function compileChanged(node: ValueNode & { kind: "changed" }): Evaluator {
  const before = compileReader("old", node.path.field, node.path.keys);
  const after = compileReader("new", node.path.field, node.path.keys);
  return (ctx) => !deepEqual(before(ctx), after(ctx));
}

function compileValue(node: ValueNode): Reader {
  switch (node.kind) {
    case "literal": {
      const value = node.value;
      return () => value;
    }
    case "path":
      return compileReader(node.path.image, node.path.field, node.path.keys);
    case "changed":
      return compileChanged(node);
    case "group":
      return compileBool(node.expr);
  }
}

function compileCompare(op: CompareOp, left: ValueNode, right: ValueNode): Evaluator {
  const a = compileValue(left);
  const b = compileValue(right);
  switch (op) {
    case "==":
      return (ctx) => valuesEqual(a(ctx), b(ctx));
    case "!=":
      return (ctx) => !valuesEqual(a(ctx), b(ctx));
    case ">":
      return (ctx) => (compareValues(a(ctx), b(ctx)) ?? 0) > 0;
    case ">=": {
      return (ctx) => {
        const order = compareValues(a(ctx), b(ctx));
        return order !== undefined && order >= 0;
      };
    }
    case "<":
      return (ctx) => (compareValues(a(ctx), b(ctx)) ?? 0) < 0;
    case "<=": {
      return (ctx) => {
        const order = compareValues(a(ctx), b(ctx));
        return order !== undefined && order <= 0;
      };
    }
  }
}
