import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { EventKind, FieldModel } from "../../src/config/types.js";
import { type ErrorCode, FraiseqlError, isFraiseqlError } from "../../src/errors.js";
import {
  type ConditionContext,
  compileCondition,
  MAX_CONDITION_DEPTH,
  MAX_CONDITION_LENGTH,
} from "../../src/observers/condition.js";

const ORDER_FIELDS: readonly FieldModel[] = [
  { name: "id", type: "ID", nullable: false },
  { name: "customer_email", type: "String", nullable: false },
  { name: "status", type: "String", nullable: false },
  { name: "total", type: "Float", nullable: false },
  { name: "quantity", type: "Int", nullable: false },
  { name: "is_priority", type: "Boolean", nullable: false },
  { name: "country", type: "String", nullable: false },
  { name: "tracking_number", type: "String", nullable: true },
  { name: "created_at", type: "DateTime", nullable: false },
  { name: "payload", type: "JSON", nullable: true },
];

const ROW = {
  id: 7,
  customer_email: "ada@example.com",
  status: "shipped",
  total: 1200.5,
  quantity: 3,
  is_priority: false,
  country: "DE",
  tracking_number: null,
  created_at: "2024-05-01T10:00:00+00:00",
  payload: {
    customer: { country: "FR", tags: ["vip"] },
    old: "key named old",
    changed: 1,
    amount: "1000.50",
  },
};

function update(old: Record<string, unknown> | null, next: Record<string, unknown> | null): ConditionContext {
  return { event: "UPDATE", old, new: next };
}

function ctx(event: EventKind, old: Record<string, unknown> | null, next: Record<string, unknown> | null) {
  return { event, old, new: next };
}

function check(
  source: string,
  context: ConditionContext,
  expected: boolean,
  fields?: readonly FieldModel[],
): void {
  const condition = compileCondition(source, fields === undefined ? {} : { fields });
  assert.equal(condition.evaluate(context), expected, `${source} on ${JSON.stringify(context)}`);
}

describe("conditions: the seed forms", () => {
  const pending = { ...ROW, status: "pending" };
  const paid = { ...ROW, status: "paid" };
  const cases: [string, ConditionContext, boolean][] = [
    ["status.changed() && status == 'shipped'", update(pending, ROW), true],
    ["status.changed() && status == 'shipped'", update(ROW, ROW), false],
    ["status.changed() && status == 'shipped'", update(ROW, paid), false],
    ["status.old == 'pending' && status.new == 'paid'", update(pending, paid), true],
    ["status.old == 'pending' && status.new == 'paid'", update(paid, pending), false],
    ["total > 1000", update(null, ROW), true],
    ["total > 1000", update(null, { ...ROW, total: 999.99 }), false],
    ["(status == 'shipped' && total > 500) || is_priority", update(null, ROW), true],
    ["(status == 'shipped' && total > 500) || is_priority", update(null, { ...ROW, total: 10 }), false],
    [
      "(status == 'shipped' && total > 500) || is_priority",
      update(null, { ...ROW, total: 10, is_priority: true }),
      true,
    ],
    ["country IN ('DE', 'FR', 'UK')", update(null, ROW), true],
    ["country IN ('DE', 'FR', 'UK')", update(null, { ...ROW, country: "US" }), false],
    ["country == 'US'", update(null, { ...ROW, country: "US" }), true],
    ["status == 'approved'", ctx("INSERT", null, { ...ROW, status: "approved" }), true],
    ["true", update(null, ROW), true],
  ];
  for (const [source, context, expected] of cases) {
    it(`${source} -> ${expected}`, () => check(source, context, expected, ORDER_FIELDS));
  }
});

describe("conditions: operators and value rules", () => {
  const row = update(null, ROW);
  const cases: [string, boolean][] = [
    // equality is null-safe
    ["tracking_number == null", true],
    ["tracking_number != null", false],
    ["null == tracking_number", true],
    ["status != null", true],
    ["status == 'shipped'", true],
    ['status == "shipped"', true],
    ["status != 'shipped'", false],
    ["status == 'Shipped'", false],
    // ordering with null or mismatched types is false, and so is its opposite
    ["tracking_number < 5", false],
    ["tracking_number >= 5", false],
    ["!(tracking_number < 5)", true],
    ["status > 5", false],
    ["status <= 5", false],
    ["payload > 1", false],
    ["payload.customer.tags > 'a'", false],
    // numbers compare numerically, numeric text counts as a number against a number
    ["total == 1200.5", true],
    ["total == 1200.50", true],
    ["total > 1000", true],
    ["total >= 1200.5", true],
    ["total < 1200.5", false],
    ["total <= 1200.5", true],
    ["quantity > -1", true],
    ["quantity == 3.0", true],
    ["quantity == 3e0", true],
    ["quantity > 2.99", true],
    ["payload.amount > 1000", true],
    ["payload.amount == 1000.5", true],
    ["payload.amount == '1000.50'", true],
    ["payload.amount == '1000.5'", false],
    ["payload.amount > '999'", false],
    ["total == '1200.5'", true],
    ["total > '900'", true],
    // strings compare by code point
    ["customer_email > 'a'", true],
    ["customer_email < 'b'", true],
    ["customer_email >= 'ada@example.com'", true],
    ["customer_email > 'ada@example.com'", false],
    ["country < 'd'", true],
    ["created_at > '2024-01-01'", true],
    // IN and NOT IN use the same equality
    ["country IN ('DE')", true],
    ["country NOT IN ('DE', 'FR')", false],
    ["country not in ('FR')", true],
    ["tracking_number IN (null)", true],
    ["tracking_number IN ('a', null)", true],
    ["tracking_number NOT IN ('a')", true],
    ["quantity IN (1, 2, 3)", true],
    ["quantity IN ('3')", true],
    ["total IN (1200.5, 1)", true],
    // truthiness of bare values
    ["is_priority", false],
    ["!is_priority", true],
    ["quantity", true],
    ["tracking_number", false],
    ["status", true],
    ["payload", true],
    ["payload.customer.tags", true],
    ["payload.missing", false],
    ["1", true],
    ["0", false],
    ["''", false],
    ["'0'", true],
    ["null", false],
    ["false", false],
    ["NOT false", true],
    // boolean operators, keywords case-insensitive, precedence
    ["status == 'shipped' and quantity == 3", true],
    ["status == 'shipped' AND quantity == 4", false],
    ["status == 'x' Or quantity == 3", true],
    ["status == 'x' || quantity == 3", true],
    ["true || true && false", true],
    ["(true || true) && false", false],
    ["!true || true", true],
    ["!(true || true)", false],
    ["NOT NOT true", true],
    ["!!is_priority", false],
    // true/false tests as values
    ["(total > 1000) == true", true],
    ["(total > 1000) != (quantity > 5)", true],
    ["status.changed() == true", true],
    ["status.changed() == false", false],
    ["is_priority == (total < 0)", true],
    // JSON paths
    ["payload.customer.country == 'FR'", true],
    ["payload.customer.country.code == null", true],
    ["payload.customer.tags.length == null", true],
    ["payload.constructor == null", true],
    ["payload.customer.tags == null", false],
    ["new.payload.old == 'key named old'", true],
    ["payload.changed == 1", true],
    // literals
    ["status == 'ship\\u0070ed'", true],
    ["'it\\'s' == customer_email", false],
  ];
  for (const [source, expected] of cases) {
    it(`${source} -> ${expected}`, () => check(source, row, expected, ORDER_FIELDS));
  }

  it("treats numeric strings from PostgreSQL numeric as numbers", () => {
    const c = compileCondition("total > 1000 && total < 1000.6 && total == 1000.5");
    assert.equal(c.evaluate(update(null, { total: "1000.50" })), true);
    assert.equal(c.evaluate(update(null, { total: "1000.70" })), false);
    assert.equal(c.evaluate(update(null, { total: "1,000.50" })), false);
    assert.equal(c.evaluate(update(null, { total: " 1000.50" })), false);
  });

  it("compares two numeric strings as text, not as numbers", () => {
    assert.equal(compileCondition("a == b").evaluate(update(null, { a: "1.0", b: "1" })), false);
    assert.equal(compileCondition("a > b").evaluate(update(null, { a: "9", b: "10" })), true);
    assert.equal(compileCondition("a > b").evaluate(update(null, { a: 9, b: "10" })), false);
  });

  it("orders text by code point, not by UTF-16 unit", () => {
    const c = compileCondition("s > '\\uffff'");
    assert.equal(c.evaluate(update(null, { s: "😀" })), true);
    assert.equal(c.evaluate(update(null, { s: "\ufffe" })), false);
    assert.equal(compileCondition("s > 'z'").evaluate(update(null, { s: "é" })), true);
    assert.equal(compileCondition("s < 'a'").evaluate(update(null, { s: "Z" })), true);
  });

  it("never reads inherited object properties as fields or keys", () => {
    const row2 = { payload: { a: 1 } };
    for (const source of [
      "constructor == null",
      "toString == null",
      "__proto__ == null",
      "payload.hasOwnProperty == null",
    ]) {
      assert.equal(compileCondition(source).evaluate(update(null, row2)), true, source);
    }
    assert.equal(compileCondition("constructor").evaluate(update(null, row2)), false);
    assert.equal(compileCondition("constructor == 'x'").evaluate(update(null, { constructor: "x" })), true);
  });

  it("accepts bigint values some drivers produce", () => {
    const c = compileCondition("n > 5 && n == 9007199254740993");
    assert.equal(c.evaluate(update(null, { n: 9007199254740993n })), true);
    assert.equal(compileCondition("n").evaluate(update(null, { n: 0n })), false);
  });

  it("reads text literals with both quotes and escapes", () => {
    const row2 = { s: 'say "hi"\n', t: "it's\\" };
    assert.equal(compileCondition('s == "say \\"hi\\"\\n"').evaluate(update(null, row2)), true);
    assert.equal(compileCondition("t == 'it\\'s\\\\'").evaluate(update(null, row2)), true);
    assert.equal(compileCondition('t == "it\'s\\\\"').evaluate(update(null, row2)), true);
  });

  it("parses negative numbers and decimals", () => {
    const c = compileCondition("x > -1.5 && x < -0.25 && y == -3 && z == 2.5e-3");
    assert.equal(c.evaluate(update(null, { x: -1, y: -3, z: 0.0025 })), true);
    assert.equal(c.evaluate(update(null, { x: -2, y: -3, z: 0.0025 })), false);
  });
});

describe("conditions: images", () => {
  const before = { status: "pending", total: 10, payload: { a: { b: 1 }, list: [1, 2] } };
  const after = { status: "shipped", total: 20, payload: { list: [1, 2], a: { b: 1 } } };
  const cases: [string, ConditionContext, boolean][] = [
    ["status == 'shipped'", ctx("UPDATE", before, after), true],
    ["status == 'pending'", ctx("DELETE", before, null), true],
    ["status == 'shipped'", ctx("DELETE", before, null), false],
    ["status == 'shipped'", ctx("INSERT", null, after), true],
    ["old.status == 'pending' && new.status == 'shipped'", ctx("UPDATE", before, after), true],
    ["status.old == 'pending' && status.new == 'shipped'", ctx("UPDATE", before, after), true],
    ["old.status == null", ctx("INSERT", null, after), true],
    ["status.old == null", ctx("INSERT", null, after), true],
    ["new.status == null", ctx("DELETE", before, null), true],
    ["new.total > old.total", ctx("UPDATE", before, after), true],
    ["status.changed()", ctx("UPDATE", before, after), true],
    ["status.changed()", ctx("UPDATE", before, before), false],
    ["total.changed()", ctx("UPDATE", before, { ...before, total: 10.0 }), false],
    ["status.changed()", ctx("INSERT", null, after), true],
    ["status.changed()", ctx("DELETE", before, null), true],
    ["missing.changed()", ctx("UPDATE", before, after), false],
    // deep equality for JSON: key order does not matter, array order does
    ["payload.changed()", ctx("UPDATE", before, after), false],
    ["payload.changed()", ctx("UPDATE", before, { payload: { a: { b: 1 }, list: [2, 1] } }), true],
    ["payload.a.changed()", ctx("UPDATE", before, { payload: { a: { b: 2 } } }), true],
    ["payload.a.b.changed()", ctx("UPDATE", before, { payload: { a: { b: 1, c: 2 } } }), false],
    [
      "payload.a.b.old == 1 && old.payload.a.b == 1 && payload.a.b.new == null",
      ctx("UPDATE", before, null),
      true,
    ],
  ];
  for (const [source, context, expected] of cases) {
    it(`${source} on ${context.event} -> ${expected}`, () => check(source, context, expected));
  }

  it("reads an entity field literally named old as bare old, new.old or old.old", () => {
    const fields: FieldModel[] = [
      { name: "old", type: "String", nullable: false },
      { name: "status", type: "String", nullable: false },
    ];
    const context = ctx("UPDATE", { old: "a", status: "x" }, { old: "b", status: "y" });
    check("old == 'b' && new.old == 'b' && old.old == 'a' && old.changed()", context, true, fields);
    check("old.status == 'x'", context, true, fields);
  });

  it("reports which fields a condition reads and whether it needs the old image", () => {
    const c = compileCondition("(status == 'a' && total > 1) || status.changed() || new.country IN ('DE')");
    assert.deepEqual(c.fields, ["status", "total", "country"]);
    assert.equal(c.usesOldImage, true);
    assert.equal(compileCondition("new.status == 'a' && status.new == 'b'").usesOldImage, false);
    assert.equal(compileCondition("old.status == 'a'").usesOldImage, true);
    assert.equal(compileCondition("status.old == 'a'").usesOldImage, true);
    assert.deepEqual(compileCondition("true").fields, []);
  });
});

interface ErrorCase {
  source: string;
  code: ErrorCode;
  position: number;
  fields?: readonly FieldModel[];
  hint?: RegExp;
  message?: RegExp;
}

describe("conditions: errors carry a code and a position", () => {
  const cases: ErrorCase[] = [
    { source: "", code: "FQL_CONDITION_SYNTAX", position: 0 },
    { source: "   ", code: "FQL_CONDITION_SYNTAX", position: 0 },
    { source: "status = 'x'", code: "FQL_CONDITION_SYNTAX", position: 7, hint: /==/ },
    { source: "status <> 'x'", code: "FQL_CONDITION_SYNTAX", position: 7, hint: /!=/ },
    { source: "a & b", code: "FQL_CONDITION_SYNTAX", position: 2, hint: /&&/ },
    { source: "a | b", code: "FQL_CONDITION_SYNTAX", position: 2, hint: /\|\|/ },
    { source: "status == 'shipped", code: "FQL_CONDITION_SYNTAX", position: 10, message: /unterminated/ },
    { source: "status == 'a\\q'", code: "FQL_CONDITION_SYNTAX", position: 12, message: /escape/ },
    { source: "status == 'a\\u12'", code: "FQL_CONDITION_SYNTAX", position: 12 },
    { source: "total > 1.", code: "FQL_CONDITION_SYNTAX", position: 10 },
    { source: "total > 1e", code: "FQL_CONDITION_SYNTAX", position: 10 },
    { source: "total > 1e999", code: "FQL_CONDITION_SYNTAX", position: 8, message: /range/ },
    { source: "total > 12abc", code: "FQL_CONDITION_SYNTAX", position: 10 },
    { source: "total > - 1", code: "FQL_CONDITION_SYNTAX", position: 8 },
    { source: "total >", code: "FQL_CONDITION_SYNTAX", position: 7 },
    { source: "(total > 1", code: "FQL_CONDITION_SYNTAX", position: 10 },
    { source: "total > 1)", code: "FQL_CONDITION_SYNTAX", position: 9 },
    { source: "()", code: "FQL_CONDITION_SYNTAX", position: 1 },
    { source: "a == 1 == 1", code: "FQL_CONDITION_SYNTAX", position: 7, hint: /chain/ },
    { source: "a b", code: "FQL_CONDITION_SYNTAX", position: 2 },
    { source: "a &&", code: "FQL_CONDITION_SYNTAX", position: 4 },
    { source: "a NOT b", code: "FQL_CONDITION_SYNTAX", position: 2 },
    { source: "a IN 'x'", code: "FQL_CONDITION_SYNTAX", position: 5 },
    { source: "a IN ()", code: "FQL_CONDITION_SYNTAX", position: 6 },
    { source: "a IN ('x',)", code: "FQL_CONDITION_SYNTAX", position: 10 },
    { source: "a IN (b)", code: "FQL_CONDITION_SYNTAX", position: 6 },
    { source: "a IN ('x'", code: "FQL_CONDITION_SYNTAX", position: 9 },
    { source: "a.", code: "FQL_CONDITION_SYNTAX", position: 2 },
    { source: "items.0 == 1", code: "FQL_CONDITION_SYNTAX", position: 6, hint: /Array/ },
    { source: "a.changed(1)", code: "FQL_CONDITION_SYNTAX", position: 10 },
    { source: "a.length() > 1", code: "FQL_CONDITION_SYNTAX", position: 2, hint: /changed/ },
    { source: "a.changed().x", code: "FQL_CONDITION_SYNTAX", position: 11 },
    { source: "in == 1", code: "FQL_CONDITION_SYNTAX", position: 0, hint: /new\.in/ },
    { source: "a == #", code: "FQL_CONDITION_SYNTAX", position: 5 },
    { source: "payload.old.x == 1", code: "FQL_CONDITION_SYNTAX", position: 8, hint: /old\.payload\.x/ },
    // unknown fields, with the nearest suggested
    {
      source: "stauts == 'shipped'",
      code: "FQL_CONDITION_UNKNOWN_FIELD",
      position: 0,
      fields: ORDER_FIELDS,
      hint: /did you mean status\?/,
      message: /customer_email, status, total/,
    },
    {
      source: "status == 'a' && old.totl > 1",
      code: "FQL_CONDITION_UNKNOWN_FIELD",
      position: 21,
      fields: ORDER_FIELDS,
      hint: /total/,
    },
    { source: "shipping.changed()", code: "FQL_CONDITION_UNKNOWN_FIELD", position: 0, fields: ORDER_FIELDS },
    {
      source: "old == 1",
      code: "FQL_CONDITION_UNKNOWN_FIELD",
      position: 0,
      fields: ORDER_FIELDS,
      hint: /old\.<field>/,
    },
    // statically visible type misuse
    { source: "status.changed() > 3", code: "FQL_CONDITION_TYPE", position: 17 },
    { source: "(a > 1) >= (b > 2)", code: "FQL_CONDITION_TYPE", position: 8 },
    { source: "a > true", code: "FQL_CONDITION_TYPE", position: 4 },
    { source: "a < null", code: "FQL_CONDITION_TYPE", position: 4, hint: /== null/ },
    { source: "'a' IN ('a', 'b')", code: "FQL_CONDITION_TYPE", position: 0 },
    { source: "a.changed() IN (true)", code: "FQL_CONDITION_TYPE", position: 0 },
    { source: "1 == 1", code: "FQL_CONDITION_TYPE", position: 0 },
    { source: "status.changed() == 'x'", code: "FQL_CONDITION_TYPE", position: 20 },
    { source: "(a > 1) == null", code: "FQL_CONDITION_TYPE", position: 11 },
    { source: "old.status.changed()", code: "FQL_CONDITION_TYPE", position: 10 },
    { source: "status.new.changed()", code: "FQL_CONDITION_TYPE", position: 10 },
    { source: "is_priority > 1", code: "FQL_CONDITION_TYPE", position: 12, fields: ORDER_FIELDS },
    { source: "1 < is_priority", code: "FQL_CONDITION_TYPE", position: 2, fields: ORDER_FIELDS },
    { source: "is_priority == 'yes'", code: "FQL_CONDITION_TYPE", position: 15, fields: ORDER_FIELDS },
    { source: "is_priority IN (1)", code: "FQL_CONDITION_TYPE", position: 16, fields: ORDER_FIELDS },
    { source: "total > 'abc'", code: "FQL_CONDITION_TYPE", position: 8, fields: ORDER_FIELDS },
    { source: "quantity == true", code: "FQL_CONDITION_TYPE", position: 12, fields: ORDER_FIELDS },
    { source: "status != false", code: "FQL_CONDITION_TYPE", position: 10, fields: ORDER_FIELDS },
    { source: "is_priority > total", code: "FQL_CONDITION_TYPE", position: 12, fields: ORDER_FIELDS },
    {
      source: "status.changed",
      code: "FQL_CONDITION_TYPE",
      position: 7,
      fields: ORDER_FIELDS,
      message: /status\.changed\(\)/,
    },
    {
      source: "status.code == 'x'",
      code: "FQL_CONDITION_TYPE",
      position: 7,
      fields: ORDER_FIELDS,
      message: /not JSON/,
    },
    // limits
    {
      source: `${"(".repeat(MAX_CONDITION_DEPTH + 1)}a${")".repeat(MAX_CONDITION_DEPTH + 1)}`,
      code: "FQL_CONDITION_LIMIT",
      position: MAX_CONDITION_DEPTH,
    },
    {
      source: `${"!".repeat(MAX_CONDITION_DEPTH + 1)}a`,
      code: "FQL_CONDITION_LIMIT",
      position: MAX_CONDITION_DEPTH,
    },
    {
      source: `${"NOT ".repeat(MAX_CONDITION_DEPTH + 1)}a`,
      code: "FQL_CONDITION_LIMIT",
      position: MAX_CONDITION_DEPTH * 4,
    },
    { source: `a == '${"x".repeat(MAX_CONDITION_LENGTH)}'`, code: "FQL_CONDITION_LIMIT", position: 60 },
  ];
  for (const c of cases) {
    const label = c.source.length > 70 ? `${c.source.slice(0, 40)}... (${c.source.length} chars)` : c.source;
    it(`${label} -> ${c.code} at ${c.position}`, () => {
      let caught: unknown;
      try {
        compileCondition(c.source, c.fields === undefined ? {} : { fields: c.fields });
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof FraiseqlError, `expected a FraiseqlError, got ${String(caught)}`);
      assert.equal(caught.code, c.code, caught.message);
      assert.equal(caught.location.position, c.position, caught.describe());
      assert.equal(typeof caught.location.expression, "string");
      if (c.hint) assert.match(caught.hint ?? "", c.hint);
      if (c.message) assert.match(caught.message, c.message);
      assert.ok(caught.isUserError);
      // the caret line sits under the reported position
      const lines = caught.describe().split("\n");
      const caret = lines.findIndex((line) => line.trimStart() === "^");
      assert.ok(caret > 0, caught.describe());
    });
  }

  it("accepts nesting up to the limit", () => {
    const deep = `${"(".repeat(MAX_CONDITION_DEPTH)}a${")".repeat(MAX_CONDITION_DEPTH)}`;
    assert.equal(compileCondition(deep).evaluate(update(null, { a: 1 })), true);
    const negations = `${"!".repeat(MAX_CONDITION_DEPTH)}a`;
    assert.equal(compileCondition(negations).evaluate(update(null, { a: 1 })), true);
  });

  it("accepts long flat conditions up to the length limit without deep recursion", () => {
    const terms: string[] = [];
    while ((terms.length + 1) * 10 < MAX_CONDITION_LENGTH) terms.push(`a == ${terms.length}`);
    const source = terms.join(" || ").slice(0, MAX_CONDITION_LENGTH);
    const flat = source.slice(0, source.lastIndexOf(" ||"));
    const c = compileCondition(flat);
    assert.equal(c.evaluate(update(null, { a: 5 })), true);
    assert.equal(c.evaluate(update(null, { a: -5 })), false);
  });
});

const CONDITION_CODES = new Set<ErrorCode>([
  "FQL_CONDITION_SYNTAX",
  "FQL_CONDITION_UNKNOWN_FIELD",
  "FQL_CONDITION_TYPE",
  "FQL_CONDITION_LIMIT",
]);

function compileOrExplain(source: string, fields?: readonly FieldModel[]): void {
  try {
    const c = compileCondition(source, fields === undefined ? {} : { fields });
    // a compiled condition must also evaluate and translate without throwing
    c.evaluate(update({ status: "a", payload: { x: [1] } }, { status: 1, total: "2.5", payload: null }));
    c.evaluate({ event: "DELETE", old: null, new: null });
    c.toSql({ tableAlias: "t" });
  } catch (err) {
    assert.ok(isFraiseqlError(err), `not a FraiseqlError for ${JSON.stringify(source)}: ${String(err)}`);
    assert.ok(CONDITION_CODES.has(err.code), err.code);
    const position = err.location.position;
    const expression = err.location.expression;
    assert.equal(typeof expression, "string");
    assert.ok(
      typeof position === "number" && position >= 0 && position <= (expression ?? "").length,
      err.describe(),
    );
  }
}

const VALID = [
  "status.changed() && status == 'shipped'",
  "status.old == 'pending' && status.new == 'paid'",
  "total > 1000",
  "(status == 'shipped' && total > 500) || is_priority",
  "country IN ('DE', 'FR', 'UK')",
  "true",
  'NOT (payload.customer.country NOT IN ("x", 1, -2.5e3, null, false)) AND old.total <= new.total',
];
const RUNS = Number(process.env.FC_RUNS ?? 1000);

describe("conditions: fuzz", () => {
  it("random text either compiles or fails with a positioned FraiseqlError", () => {
    const alphabet = fc.constantFrom(..."()!=<>&|'\"\\.,- _aAbnotrueflsINOTD0123456789e\n\t#{}".split(""));
    fc.assert(
      fc.property(fc.string({ unit: alphabet, maxLength: 80 }), (source) => compileOrExplain(source)),
      { numRuns: RUNS },
    );
  });

  it("any string, any unicode, with and without declared fields", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 60 }), fc.boolean(), (source, withFields) =>
        compileOrExplain(source, withFields ? ORDER_FIELDS : undefined),
      ),
      { numRuns: RUNS },
    );
  });

  it("mutated valid conditions either compile or fail with a positioned FraiseqlError", () => {
    const edit = fc.record({
      at: fc.nat(),
      remove: fc.nat({ max: 4 }),
      insert: fc.string({ unit: fc.constantFrom(..."()!=<>&|'\". x0N-".split("")), maxLength: 4 }),
    });
    fc.assert(
      fc.property(
        fc.constantFrom(...VALID),
        fc.array(edit, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (base, edits, withFields) => {
          let source = base;
          for (const { at, remove, insert } of edits) {
            const i = at % (source.length + 1);
            source = source.slice(0, i) + insert + source.slice(i + remove);
          }
          compileOrExplain(source, withFields ? ORDER_FIELDS : undefined);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("hostile nesting and length are refused, not recursed into", () => {
    for (const opener of ["(", "!", "NOT ", "!(", "a == ("]) {
      const source = opener.repeat(100_000);
      assert.throws(
        () => compileCondition(source),
        (err: unknown) => isFraiseqlError(err, "FQL_CONDITION_LIMIT"),
      );
    }
    const deep = `${"(".repeat(2000)}a${")".repeat(2000)}`;
    assert.throws(
      () => compileCondition(deep),
      (err: unknown) => isFraiseqlError(err, "FQL_CONDITION_LIMIT"),
    );
  });

  it("evaluation never throws on any JSON images", () => {
    const json = fc.jsonValue({ maxDepth: 3 });
    const image = fc.option(fc.dictionary(fc.constantFrom("status", "total", "payload", "a"), json), {
      nil: null,
    });
    const conditions = VALID.map((source) => compileCondition(source));
    fc.assert(
      fc.property(
        fc.constantFrom("INSERT", "UPDATE", "DELETE" as const),
        image,
        image,
        (event, old, next) => {
          for (const c of conditions) assert.equal(typeof c.evaluate({ event, old, new: next }), "boolean");
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("deeply nested JSON does not overflow changed()", () => {
    const nest = (leaf: unknown, asArray: boolean): unknown => {
      let value = leaf;
      for (let i = 0; i < 100_000; i++) value = asArray ? [value] : { a: value };
      return value;
    };
    const c = compileCondition("payload.changed()");
    assert.equal(c.evaluate(update({ payload: nest(1, false) }, { payload: nest(1, false) })), false);
    assert.equal(c.evaluate(update({ payload: nest(1, true) }, { payload: nest(2, true) })), true);
  });
});
