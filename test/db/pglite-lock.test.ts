import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { openPglite, PGLITE_LOCK_FILE } from "../../src/db/pglite.js";
import { FraiseqlError } from "../../src/errors.js";

describe("an embedded database directory", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "fraiseql-lock-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is open in one instance at a time, and free again once closed", async () => {
    const first = await openPglite(dir);
    try {
      await first.query("CREATE TABLE kept (n int)");
      assert.equal((await readFile(join(dir, PGLITE_LOCK_FILE), "utf8")).trim(), String(process.pid));
      await assert.rejects(openPglite(dir), (err: unknown) => {
        assert.ok(err instanceof FraiseqlError);
        assert.equal(err.code, "FQL_DB_IN_USE");
        assert.match(err.message, new RegExp(`open in process ${process.pid} \\(this one\\)`));
        return true;
      });
    } finally {
      await first.close();
    }
    const second = await openPglite(dir);
    try {
      const { rows } = await second.query<{ n: number }>("SELECT count(*)::int AS n FROM kept");
      assert.deepEqual(rows, [{ n: 0 }], "the first instance's table is there");
    } finally {
      await second.close();
    }
  });

  it("is refused while another live process holds it", async () => {
    // This test's parent process stands in for the other one: its pid is alive.
    await writeFile(join(dir, PGLITE_LOCK_FILE), `${process.ppid}\n`);
    try {
      await assert.rejects(openPglite(dir), /FQL_DB_IN_USE|open in process/);
    } finally {
      await rm(join(dir, PGLITE_LOCK_FILE), { force: true });
    }
  });

  it("is taken over from a process that is gone", async () => {
    const gone = spawnSync(process.execPath, ["-e", ""]).pid as number;
    await writeFile(join(dir, PGLITE_LOCK_FILE), `${gone}\n`);
    const db = await openPglite(dir);
    try {
      assert.equal((await readFile(join(dir, PGLITE_LOCK_FILE), "utf8")).trim(), String(process.pid));
    } finally {
      await db.close();
    }
  });
});
