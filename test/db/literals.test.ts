import assert from "node:assert/strict";
import { describe, it } from "node:test";
import pg from "pg";
import { inlineParams, sqlLiteral } from "../../src/db/pg.js";
import { openTestDatabase, TEST_DATABASE_URL } from "../helpers/db.js";

describe("statements with their parameters as literals", () => {
  it("writes each kind of value as a literal", () => {
    assert.equal(sqlLiteral(null), "NULL");
    assert.equal(sqlLiteral(undefined), "NULL");
    assert.equal(sqlLiteral(true), "TRUE");
    assert.equal(sqlLiteral(42), "42");
    assert.equal(sqlLiteral(2.5), "2.5");
    assert.equal(sqlLiteral(12345678901234567890n), "12345678901234567890");
    assert.equal(sqlLiteral("it's"), "'it''s'");
    assert.equal(sqlLiteral("a\\b"), " E'a\\\\b'");
    assert.equal(sqlLiteral(["1", "2"]), "ARRAY['1', '2']");
    assert.throws(() => sqlLiteral(Number.NaN), /finite/);
    assert.throws(() => sqlLiteral({}), /no SQL literal/);
  });

  it("quotes strings exactly as pg.escapeLiteral does", () => {
    const texts = ["", "plain", "'", "it''s", "\\", "a\\b'c", '{"x":"it\'s \\\\ fine"}', "é'\\\n\t"];
    for (const text of texts) assert.equal(sqlLiteral(text), pg.escapeLiteral(text), JSON.stringify(text));
  });

  it("replaces $n, and only the parameters given", () => {
    assert.equal(
      inlineParams({ text: "SELECT $1::int, $2, $10", params: [1, "x", 3, 4, 5, 6, 7, 8, 9, "ten"] }),
      "SELECT 1::int, 'x', 'ten'",
    );
    assert.throws(() => inlineParams({ text: "SELECT $2", params: [1] }), /no parameter \$2/);
  });

  it("round-trips hostile text through the server unchanged", {
    skip: TEST_DATABASE_URL ? false : "needs a PostgreSQL server (TEST_DATABASE_URL)",
  }, async () => {
    const db = await openTestDatabase();
    try {
      const hostile = `'; DROP TABLE x; -- \\' \\\\ "quoted" $1 \u00e9\u{1F600}`;
      const json = JSON.stringify({ hostile, nested: ["a'b", "c\\d"] });
      const value = await db.readThenWrite<{ s: string; j: unknown; a: string[] }, unknown>(
        {
          text: "SELECT $1::text AS s, $2::jsonb AS j, $3::text[] AS a",
          params: [hostile, json, ["x'y", "z"]],
        },
        (rows) => ({ value: rows[0] }),
      );
      assert.deepEqual(value, { s: hostile, j: JSON.parse(json), a: ["x'y", "z"] });
    } finally {
      await db.close();
    }
  });
});
