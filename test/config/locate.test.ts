import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatPath, locateKey, parsePath } from "../../src/config/locate.js";

const SOURCE = `# comment [not.a.table]
include = ["./a.ts",
  "./b.ts"]

[webhooks]
timeout = "30s"

[webhooks.retry]
max_attempts = 3
retry_on = [
  408, # comment ] with a bracket
  429,
]
description = """
[[observers]]
name = "not a key"
"""

[[entities]]
name = "Order"
[entities.fields]
total = "Float"

[[observers]]
name = "first"
  [[observers.actions]]
  url = "https://a.example.com"

[[observers]]
name = "second"
retry.max_attempts = 5
[observers.retry]
backoff = "linear"

[[observers.actions]]
url = "https://b.example.com"
headers = { Authorization = "Bearer x", "X.Dotted" = "y" }
batch = { size = 10, timeout = "5s" }

[[observers.actions]]
url = 'https://c.example.com'
body = { items = [{ id = "{{ id }}" }, { id = 2 }] }
`;

describe("locateKey", () => {
  const cases: [string, number, number][] = [
    ["include", 2, 1],
    ["include[1]", 3, 3],
    ["webhooks", 5, 1],
    ["webhooks.timeout", 6, 1],
    ["webhooks.retry", 8, 1],
    ["webhooks.retry.max_attempts", 9, 1],
    ["webhooks.retry.retry_on", 10, 1],
    ["webhooks.retry.description", 14, 1],
    ["entities[0]", 19, 1],
    ["entities[0].name", 20, 1],
    ["entities[0].fields.total", 22, 1],
    ["observers[0]", 24, 1],
    ["observers[0].name", 25, 1],
    ["observers[0].actions[0]", 26, 3],
    ["observers[0].actions[0].url", 27, 3],
    ["observers[1].name", 30, 1],
    ["observers[1].retry.max_attempts", 31, 1],
    ["observers[1].retry.backoff", 33, 1],
    ["observers[1].actions[0].url", 36, 1],
    ["observers[1].actions[0].headers.Authorization", 37, 13],
    ['observers[1].actions[0].headers."X.Dotted"', 37, 41],
    ["observers[1].actions[0].batch.timeout", 38, 22],
    ["observers[1].actions[1].url", 41, 1],
    ["observers[1].actions[1].body.items[1].id", 42, 42],
  ];
  for (const [path, line, column] of cases) {
    it(`finds ${path} at ${line}:${column}`, () =>
      assert.deepEqual(locateKey(SOURCE, path), { line, column }));
  }

  it("falls back to the nearest written ancestor", () => {
    assert.deepEqual(locateKey(SOURCE, "webhooks.retry.max_delay"), { line: 8, column: 1 });
    assert.deepEqual(locateKey(SOURCE, "observers[0].actions[0].method"), { line: 26, column: 3 });
    assert.deepEqual(locateKey(SOURCE, "observers[0].event"), { line: 24, column: 1 });
    assert.equal(locateKey(SOURCE, "server.port"), undefined);
  });

  it("does not mistake text inside strings for headers", () => {
    assert.deepEqual(locateKey(SOURCE, "observers[2]"), { line: 24, column: 1 });
  });

  it("accepts path segments as well as text", () => {
    assert.deepEqual(locateKey(SOURCE, ["observers", 1, "actions", 0, "url"]), { line: 36, column: 1 });
    assert.equal(locateKey(SOURCE, ["observers", { name: "second" }]), undefined);
  });
});

describe("formatPath / parsePath", () => {
  it("round-trips keys, indices and quoted keys", () => {
    const paths = [
      "a.b[1].c",
      'headers."X.Dotted"',
      "observers[0].actions[2].body.items[0]",
      'a."with space"',
    ];
    for (const path of paths) assert.equal(formatPath(parsePath(path)), path);
  });

  it("names items by name", () => {
    assert.equal(
      formatPath(["observers", { name: "on_created" }, "actions", 0, "url"]),
      "observers[on_created].actions[0].url",
    );
  });
});
