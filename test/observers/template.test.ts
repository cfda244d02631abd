import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { FieldModel } from "../../src/config/types.js";
import { type ErrorCode, FraiseqlError, isFraiseqlError } from "../../src/errors.js";
import {
  compileBodyTemplate,
  compileStringTemplate,
  type TemplateContext,
} from "../../src/observers/template.js";

const FIELDS: readonly FieldModel[] = [
  { name: "id", type: "ID", nullable: false },
  { name: "customer_email", type: "String", nullable: false },
  { name: "total", type: "Float", nullable: false },
  { name: "status", type: "String", nullable: false },
  { name: "tracking_number", type: "String", nullable: true },
  { name: "items", type: "JSON", nullable: true },
  { name: "address", type: "JSON", nullable: true },
  { name: "is_priority", type: "Boolean", nullable: false },
];

const ORDER = {
  id: 42,
  customer_email: "ada@example.com",
  total: 99.99,
  status: "shipped",
  tracking_number: null,
  items: [{ sku: "A-1", qty: 2 }],
  address: { city: "Zürich", zip: "8001", lines: ["Main St 1", "c/o {{ id }}"] },
  is_priority: true,
};

function context(overrides: Partial<TemplateContext> = {}): TemplateContext {
  return {
    event: "UPDATE",
    old: { ...ORDER, status: "paid", total: 89.99 },
    new: ORDER,
    entity: "Order",
    observer: "notify_shipping_update",
    eventId: "0190c0de-0000-7000-8000-000000000001",
    timestamp: "2024-05-01T10:00:00.000Z",
    ...overrides,
  };
}

describe("body templates", () => {
  it("keeps the JSON type of a value that is the whole string", () => {
    const body = compileBodyTemplate(
      {
        event: "order.created",
        order_id: "{{ id }}",
        customer_email: "{{ customer_email }}",
        total: "{{ total }}",
        items: "{{ items }}",
        address: "{{address}}",
        priority: "{{ is_priority }}",
        tracking_number: "{{ tracking_number }}",
        timestamp: "{{ _timestamp }}",
      },
      { fields: FIELDS },
    );
    assert.deepEqual(body.render(context()), {
      event: "order.created",
      order_id: 42,
      customer_email: "ada@example.com",
      total: 99.99,
      items: [{ sku: "A-1", qty: 2 }],
      address: ORDER.address,
      priority: true,
      tracking_number: null,
      timestamp: "2024-05-01T10:00:00.000Z",
    });
    assert.deepEqual(body.fields, [
      "id",
      "customer_email",
      "total",
      "items",
      "address",
      "is_priority",
      "tracking_number",
    ]);
  });

  it("renders a missing field or key as null", () => {
    const body = compileBodyTemplate({ a: "{{ nope }}", b: "{{ address.country }}", c: "{{ items.sku }}" });
    assert.deepEqual(body.render(context()), { a: null, b: null, c: null });
  });

  it("interpolates values inside longer text", () => {
    const body = compileBodyTemplate({
      text: "Order {{ id }} ({{ status }}) costs {{ total }}; priority={{ is_priority }}",
      nothing: "tracking: [{{ tracking_number }}]",
      json: "items={{ items }} city={{ address.city }}",
      padded: " {{ total }}",
    });
    assert.deepEqual(body.render(context()), {
      text: "Order 42 (shipped) costs 99.99; priority=true",
      nothing: "tracking: []",
      json: 'items=[{"sku":"A-1","qty":2}] city=Zürich',
      padded: " 99.99",
    });
  });

  it("walks nested objects and arrays, keeping keys and non-string values as written", () => {
    const body = compileBodyTemplate({
      "{{ id }}": "key is not templated",
      orders: [{ id: "{{ id }}", total: "{{ total }}" }, 3, null, true],
      nested: {
        deeper: { status: "{{ new.status }}", was: "{{ status.old }}", email: "{{customer_email}}" },
      },
      gdpr_required: true,
      count: 0,
    });
    assert.deepEqual(body.render(context()), {
      "{{ id }}": "key is not templated",
      orders: [{ id: 42, total: 99.99 }, 3, null, true],
      nested: { deeper: { status: "shipped", was: "paid", email: "ada@example.com" } },
      gdpr_required: true,
      count: 0,
    });
  });

  it("reads the old image for DELETE and explicit images otherwise", () => {
    const body = compileBodyTemplate({ id: "{{ id }}", before: "{{ old.total }}", after: "{{ total.new }}" });
    assert.deepEqual(body.render(context()), { id: 42, before: 89.99, after: 99.99 });
    assert.deepEqual(body.render(context({ event: "DELETE", old: ORDER, new: null })), {
      id: 42,
      before: 99.99,
      after: null,
    });
    assert.deepEqual(body.render(context({ event: "INSERT", old: null })), {
      id: 42,
      before: null,
      after: 99.99,
    });
  });

  it("offers _timestamp, _event, _entity, _observer, _id and names from extra", () => {
    const body = compileBodyTemplate({
      at: "{{ _timestamp }}",
      event: "{{ _event }}",
      entity: "{{ _entity }}",
      observer: "{{ _observer }}",
      id: "{{ _id }}",
      count: "{{ _count }}",
      line: "{{ _entity }}.{{ _event }} #{{ _count }}",
    });
    assert.deepEqual(body.render(context()), {
      at: "2024-05-01T10:00:00.000Z",
      event: "UPDATE",
      entity: "Order",
      observer: "notify_shipping_update",
      id: "0190c0de-0000-7000-8000-000000000001",
      count: null,
      line: "Order.UPDATE #",
    });
    const batch = body.render(context({ extra: { _count: 10, _timestamp: "2024-05-01T10:00:05.000Z" } }));
    assert.deepEqual(batch, {
      at: "2024-05-01T10:00:05.000Z",
      event: "UPDATE",
      entity: "Order",
      observer: "notify_shipping_update",
      id: "0190c0de-0000-7000-8000-000000000001",
      count: 10,
      line: "Order.UPDATE #10",
    });
  });

  it("never renders {{ found in the data", () => {
    const evil = { ...ORDER, customer_email: "{{ _id }}", status: "{{ status }}{{" };
    const body = compileBodyTemplate({
      email: "{{ customer_email }}",
      line: "{{ status }} and {{ address.lines }}",
    });
    assert.deepEqual(body.render(context({ new: evil })), {
      email: "{{ _id }}",
      line: '{{ status }}{{ and ["Main St 1","c/o {{ id }}"]',
    });
  });

  it("writes \\{{ as a literal {{", () => {
    const body = compileBodyTemplate({ text: "Hello \\{{ name }}, order {{ id }}" });
    assert.deepEqual(body.render(context()), { text: "Hello {{ name }}, order 42" });
  });

  it("returns a fresh tree on every render and constant parts unchanged", () => {
    const template = compileBodyTemplate({ a: { b: "{{ id }}" }, c: ["x"] });
    const first = template.render(context()) as { a: { b: unknown } };
    first.a.b = "changed";
    assert.deepEqual(template.render(context()), { a: { b: 42 }, c: ["x"] });
    const fixed = compileBodyTemplate({ static: [1, { a: "b" }] });
    const rendered = fixed.render(context()) as { static: [number, { a: string }] };
    rendered.static[1].a = "mutated";
    assert.deepEqual(fixed.render(context()), { static: [1, { a: "b" }] });
    assert.equal(compileBodyTemplate("{{ total }}").render(context()), 99.99);
    assert.equal(compileBodyTemplate(undefined).render(context()), null);
  });

  it("keeps a body key named __proto__ as a plain key", () => {
    const body = JSON.parse('{"__proto__": "{{ id }}", "x": "{{ id }}"}');
    const out = compileBodyTemplate(body).render(context()) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(out), Object.prototype);
    assert.equal(Object.hasOwn(out, "__proto__"), true);
    assert.equal(JSON.stringify(out), '{"__proto__":42,"x":42}');
  });

  it("turns dates in a body (e.g. TOML datetimes) into ISO text", () => {
    const body = compileBodyTemplate({ since: new Date("2024-01-02T03:04:05Z") });
    assert.deepEqual(body.render(context()), { since: "2024-01-02T03:04:05.000Z" });
  });
});

describe("string templates", () => {
  it("interpolates URLs and headers", () => {
    const url = compileStringTemplate("https://api.example.com/orders/{{ id }}/status", { fields: FIELDS });
    assert.equal(url.render(context()), "https://api.example.com/orders/42/status");
    assert.deepEqual(url.fields, ["id"]);
    assert.equal(url.source, "https://api.example.com/orders/{{ id }}/status");
    const header = compileStringTemplate("Bearer abc {{ _observer }}");
    assert.equal(header.render(context()), "Bearer abc notify_shipping_update");
    assert.equal(compileStringTemplate("plain").render(context()), "plain");
    assert.equal(compileStringTemplate("").render(context()), "");
    assert.equal(compileStringTemplate("{{ total }}").render(context()), "99.99");
    assert.equal(compileStringTemplate("{{ address }}").render(context()), JSON.stringify(ORDER.address));
  });

  it("percent-encodes interpolated values, not the text around them, with encode uri-component", () => {
    const url = compileStringTemplate(
      "https://x.test/c/{{ address.city }}?q={{ customer_email }}&l={{ address.lines }}",
      {
        encode: "uri-component",
      },
    );
    assert.equal(
      url.render(context()),
      `https://x.test/c/Z%C3%BCrich?q=ada%40example.com&l=${encodeURIComponent(JSON.stringify(ORDER.address.lines))}`,
    );
    const evil = compileStringTemplate("https://x.test/{{ status }}", { encode: "uri-component" });
    assert.equal(
      evil.render(context({ new: { status: "../../admin?x=1#y" } })),
      "https://x.test/..%2F..%2Fadmin%3Fx%3D1%23y",
    );
    assert.equal(evil.render(context({ new: { status: "bad\ud800" } })), "https://x.test/bad%EF%BF%BD");
  });

  it("leaves CR/LF in header values to the sender to reject", () => {
    const header = compileStringTemplate("v={{ status }}");
    assert.equal(header.render(context({ new: { status: "a\r\nInjected: 1" } })), "v=a\r\nInjected: 1");
  });
});

interface ErrorCase {
  source: string;
  code: ErrorCode;
  position: number;
  hint?: RegExp;
}

describe("template errors carry a code and a position", () => {
  const cases: ErrorCase[] = [
    { source: "{{ }}", code: "FQL_TEMPLATE_SYNTAX", position: 3 },
    { source: "{{}}", code: "FQL_TEMPLATE_SYNTAX", position: 2 },
    { source: "x {{ id", code: "FQL_TEMPLATE_SYNTAX", position: 2, hint: /\\\{\{/ },
    { source: "{{ id }} and {{ total", code: "FQL_TEMPLATE_SYNTAX", position: 13 },
    { source: "{{ id total }}", code: "FQL_TEMPLATE_SYNTAX", position: 6 },
    { source: "{{ id. }}", code: "FQL_TEMPLATE_SYNTAX", position: 6 },
    { source: "{{ 1 }}", code: "FQL_TEMPLATE_SYNTAX", position: 3 },
    { source: "{{ id == 1 }}", code: "FQL_TEMPLATE_SYNTAX", position: 6 },
    { source: "{{ status.changed() }}", code: "FQL_TEMPLATE_SYNTAX", position: 17 },
    { source: "{{ a {{ b }}", code: "FQL_TEMPLATE_SYNTAX", position: 5 },
    { source: "{{ address.old.city }}", code: "FQL_TEMPLATE_SYNTAX", position: 11 },
    { source: "{{ totl }}", code: "FQL_TEMPLATE_UNKNOWN_FIELD", position: 3, hint: /did you mean total\?/ },
    { source: "/{{ old.stauts }}", code: "FQL_TEMPLATE_UNKNOWN_FIELD", position: 8, hint: /status/ },
    { source: "{{ status.code }}", code: "FQL_TEMPLATE_UNKNOWN_FIELD", position: 10 },
    { source: "{{ _timestmap }}", code: "FQL_TEMPLATE_UNKNOWN_FIELD", position: 3, hint: /_timestamp/ },
  ];
  for (const c of cases) {
    it(`${c.source} -> ${c.code} at ${c.position}`, () => {
      let caught: unknown;
      try {
        compileStringTemplate(c.source, { fields: FIELDS });
      } catch (err) {
        caught = err;
      }
      assert.ok(caught instanceof FraiseqlError, `expected a FraiseqlError, got ${String(caught)}`);
      assert.equal(caught.code, c.code, caught.message);
      assert.equal(caught.location.position, c.position, caught.describe());
      assert.equal(caught.location.expression, c.source);
      if (c.hint) assert.match(caught.hint ?? "", c.hint);
    });
  }

  it("names the body key in errors inside a body", () => {
    assert.throws(
      () => compileBodyTemplate({ orders: [{ id: "{{ idd }}" }] }, { fields: FIELDS }),
      (err: unknown) =>
        isFraiseqlError(err, "FQL_TEMPLATE_UNKNOWN_FIELD") &&
        err.message.startsWith("body.orders[0].id:") &&
        err.location.position === 3 &&
        err.hint === "did you mean id?",
    );
    assert.throws(
      () => compileBodyTemplate({ "a b": "{{" }),
      (err: unknown) => isFraiseqlError(err, "FQL_TEMPLATE_SYNTAX") && err.message.startsWith('body["a b"]:'),
    );
  });

  it("accepts extra names declared by the caller and _count by default", () => {
    assert.doesNotThrow(() => compileStringTemplate("{{ _count }}", { fields: FIELDS }));
    assert.throws(() => compileStringTemplate("{{ _batch }}", { fields: FIELDS }));
    const t = compileBodyTemplate({ b: "{{ _batch }}" }, { fields: FIELDS, extraNames: ["_batch"] });
    assert.deepEqual(t.render(context({ extra: { _batch: "b1" } })), { b: "b1" });
  });

  it("random templates either compile or fail with a positioned FraiseqlError", () => {
    const unit = fc.constantFrom(..."{{}} ._aidtotal\\xé".split(""));
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 40 }), fc.boolean(), (source, withFields) => {
        try {
          const t = compileStringTemplate(source, withFields ? { fields: FIELDS } : {});
          assert.equal(typeof t.render(context()), "string");
        } catch (err) {
          assert.ok(isFraiseqlError(err), String(err));
          assert.ok(
            err.code === "FQL_TEMPLATE_SYNTAX" || err.code === "FQL_TEMPLATE_UNKNOWN_FIELD",
            err.code,
          );
          const position = err.location.position;
          assert.ok(
            typeof position === "number" && position >= 0 && position <= source.length,
            err.describe(),
          );
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 1000) },
    );
  });

  it("rendering inserts values verbatim, whatever they hold", () => {
    const template = compileStringTemplate("<{{ status }}|{{ customer_email }}>");
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        assert.equal(template.render(context({ new: { status: a, customer_email: b } })), `<${a}|${b}>`);
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 1000) },
    );
  });
});
