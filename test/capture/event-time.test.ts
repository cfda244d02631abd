import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { eventTimeSql } from "../../src/capture/outbox.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

describe("an event's time formatted by the server", () => {
  let db: TestDatabase;
  before(async () => {
    db = await openTestDatabase();
  });
  after(() => db?.close());

  it("is the text Date.prototype.toISOString gives for the same timestamptz, in any session time zone", async () => {
    const times = [
      "2026-11-29 01:37:04.123456+00",
      "2026-11-29 01:37:04.999999+00",
      "2026-11-29 01:37:04+00",
      "2026-11-29 01:37:04.1+05:30",
      "1999-12-31 23:59:59.000500-08",
      "2024-02-29 00:00:00.007+00",
    ];
    for (const zone of ["UTC", "America/Los_Angeles", "Asia/Kolkata"]) {
      await db.exec(`SET TimeZone = '${zone}'`);
      for (const t of times) {
        const { rows } = await db.query<{ iso: string; at: Date }>(
          `SELECT ${eventTimeSql("x")} AS iso, x AS at FROM (SELECT $1::timestamptz AS x) s`,
          [t],
        );
        const row = rows[0]!;
        assert.equal(row.iso, row.at.toISOString(), `${t} in ${zone}`);
      }
    }
  });
});
