import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { migrate } from "../../src/db/migrate.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

describe("a database migrated by a newer version", () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase();
    await migrate(db);
  });
  after(() => db?.close());

  it("stops an older process before it runs anything, naming the migration it does not know", async () => {
    await db.query("INSERT INTO fraiseql.migrations (id, name) VALUES (999, '999_from_the_future')");
    await assert.rejects(migrate(db), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, "FQL_SCHEMA_NEWER");
      assert.match(
        err.message,
        /migration 999_from_the_future, which this version of fraiseql does not know \(its latest is 007_/,
      );
      assert.match(err.hint ?? "", /newer fraiseql migrated this database/);
      return true;
    });
  });
});
