import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFile, mkdtemp, readdir, readFile, rm, stat, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import type { DlqConfig } from "../../src/config/types.js";
import { type FileDlqOptions, fileDlq, type UnreadableLine } from "../../src/dlq/file.js";
import type { DeadLetter } from "../../src/dlq/types.js";
import { ago, DAY, DLQ_DEFAULTS, deadLetter, HOUR, MINUTE } from "./fixtures/dead-letters.js";
import { loopEntryId } from "./fixtures/write-loop.js";

const ids = (entries: readonly DeadLetter[]) => entries.map((e) => e.id);
const utcDay = (date: Date) => date.toISOString().slice(0, 10);

describe("file DLQ backend", () => {
  let root: string;
  let cases = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "fraiseql-file-dlq-"));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** A config with a file of its own, in a directory that does not exist yet. */
  function config(overrides: Partial<DlqConfig> = {}): DlqConfig {
    cases += 1;
    return {
      ...DLQ_DEFAULTS,
      backend: "file",
      path: join(root, `case-${cases}`, "webhook_dlq.jsonl"),
      ...overrides,
    };
  }

  function collecting(): FileDlqOptions & { lines: UnreadableLine[] } {
    const lines: UnreadableLine[] = [];
    return { lines, onUnreadableLine: (line) => lines.push(line) };
  }

  async function lines(path: string): Promise<string[]> {
    return (await readFile(path, "utf8")).split("\n").filter((l) => l !== "");
  }

  it("writes one JSON record per line, state changes as further records", async () => {
    const cfg = config({ rotation: "none" });
    const dlq = fileDlq(cfg);
    const entry = deadLetter();
    await dlq.write([entry]);
    const at = new Date();
    await dlq.markReplayed([entry.id], at);
    await dlq.resolve([entry.delivery_id]);
    const records = (await lines(cfg.path)).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(records, [
      { op: "put", ...entry },
      { op: "put", ...entry, replayed_at: at.toISOString(), replay_count: 1 },
      { op: "del", id: entry.id, at: records[2]?.at },
    ]);
    assert.equal(typeof records[2]?.at, "string");
  });

  it("skips and reports a torn last line, and later entries still read", async () => {
    const cfg = config();
    const writer = fileDlq(cfg, collecting());
    const first = deadLetter({ failed_at: ago(2 * HOUR) });
    await writer.write([first]);
    const intact = (await stat(cfg.path)).size;
    // What a crash in the middle of an append leaves behind.
    await appendFile(cfg.path, '{"op":"put","id":"dlq_0123456789abcdef0123","observer":"on_order_cr');
    const watch = collecting();
    const reader = fileDlq(cfg, watch);
    assert.deepEqual(await reader.list(), [first]);
    assert.deepEqual(
      watch.lines.map((l) => [l.kind, l.offset, l.file]),
      [["incomplete", intact, cfg.path]],
    );

    const second = deadLetter({ failed_at: ago(HOUR) });
    await writer.write([second]);
    assert.deepEqual(await reader.list(), [second, first]);
    assert.deepEqual(await fileDlq(cfg, collecting()).list(), [second, first]);
    // The torn fragment ended up on a line of its own instead of swallowing the next record.
    const raw = await lines(cfg.path);
    assert.equal(raw.length, 3);
    assert.equal(JSON.parse(raw[2] as string).id, second.id);
    assert.deepEqual(
      watch.lines.map((l) => l.kind),
      ["incomplete", "invalid"],
    );
  });

  it("rotates yesterday's file to a dated, gzipped file and still reads it", async () => {
    const cfg = config({ rotation: "daily", compress: true });
    const dir = dirname(cfg.path);
    const dlq = fileDlq(cfg);
    const older = deadLetter({ failed_at: ago(25 * HOUR) });
    await dlq.write([older]);
    const yesterday = new Date(Date.now() - DAY);
    await utimes(cfg.path, yesterday, yesterday);

    const newer = deadLetter({ failed_at: ago(MINUTE) });
    await dlq.write([newer]);
    const rotatedName = `webhook_dlq.${utcDay(yesterday)}.jsonl.gz`;
    assert.deepEqual((await readdir(dir)).sort(), [rotatedName, "webhook_dlq.jsonl"]);
    const rotated = gunzipSync(await readFile(join(dir, rotatedName)))
      .toString("utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).id);
    assert.deepEqual(rotated, [older.id]);
    assert.deepEqual(
      (await lines(cfg.path)).map((l) => JSON.parse(l).id),
      [newer.id],
    );
    assert.deepEqual(await dlq.list(), [newer, older]);
    assert.deepEqual(await fileDlq(cfg).list(), [newer, older]);

    // Changes to an entry of a rotated file are appended to today's file; once no entry lives in
    // the rotated file any more, the file goes.
    await dlq.markReplayed([older.id], new Date());
    assert.equal((await fileDlq(cfg).get(older.id))?.replay_count, 1);
    assert.equal(await dlq.resolve([older.delivery_id]), 1);
    assert.deepEqual(await readdir(dir), ["webhook_dlq.jsonl"]);
    assert.deepEqual(await dlq.list(), [newer]);
  });

  it("rotates by the injected clock, and without compress keeps the rotated file plain", async () => {
    const cfg = config({ rotation: "daily", compress: false });
    const first = deadLetter({ failed_at: ago(2 * HOUR) });
    await fileDlq(cfg).write([first]);
    const { mtime } = await stat(cfg.path);
    const tomorrow = fileDlq(cfg, { now: () => new Date(mtime.getTime() + DAY) });
    const second = deadLetter({ failed_at: ago(HOUR) });
    await tomorrow.write([second]);
    assert.deepEqual((await readdir(dirname(cfg.path))).sort(), [
      `webhook_dlq.${utcDay(mtime)}.jsonl`,
      "webhook_dlq.jsonl",
    ]);
    assert.deepEqual(await tomorrow.list(), [second, first]);
    // Another rotation on the same day does not overwrite the first one.
    await utimes(cfg.path, mtime, mtime);
    const third = deadLetter({ failed_at: ago(MINUTE) });
    await tomorrow.write([third]);
    assert.deepEqual((await readdir(dirname(cfg.path))).sort(), [
      `webhook_dlq.${utcDay(mtime)}.1.jsonl`,
      `webhook_dlq.${utcDay(mtime)}.jsonl`,
      "webhook_dlq.jsonl",
    ]);
    assert.deepEqual(ids(await fileDlq(cfg).list()), [third.id, second.id, first.id]);
  });

  it("shares one file between backends (processes): each sees the others' changes", async () => {
    const cfg = config();
    const a = fileDlq(cfg);
    const b = fileDlq(cfg);
    const x = deadLetter({ failed_at: ago(HOUR) });
    await a.write([x]);
    assert.deepEqual(await b.list(), [x]);
    await b.markReplayed([x.id], new Date());
    assert.equal((await a.get(x.id))?.replay_count, 1);
    const y = deadLetter({ failed_at: ago(MINUTE) });
    await a.write([y]);
    assert.deepEqual(ids(await b.list()), [y.id, x.id]);
    assert.equal(await b.resolve([x.delivery_id]), 1);
    assert.deepEqual(await a.list(), [y]);
    assert.deepEqual(await a.sizes(), new Map([["on_order_created", 1]]));
  });

  it("leaves a readable file when the writing process is killed (SIGKILL) mid-loop", {
    timeout: 60_000,
  }, async () => {
    const cfg = config({ rotation: "none" });
    const writerScript = fileURLToPath(new URL("./fixtures/write-loop.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", writerScript, cfg.path], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let confirmed = 0;
    await new Promise<void>((resolve, reject) => {
      let pending = "";
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (chunk: string) => {
        pending += chunk;
        const complete = pending.split("\n");
        pending = complete.pop() ?? "";
        for (const line of complete) confirmed = Number(line);
        if (confirmed >= 500) resolve();
      });
      child.once("exit", (code, signal) => reject(new Error(`the writer stopped early: ${code ?? signal}`)));
    });
    child.kill("SIGKILL");
    await exited;

    const watch = collecting();
    const dlq = fileDlq(cfg, watch);
    const all = await dlq.list({ limit: 0 });
    // Every write the writer saw succeed is there, and nothing unreadable but a torn tail.
    const present = new Set(ids(all));
    for (let n = 0; n < confirmed; n++)
      assert.ok(present.has(loopEntryId(n)), `entry ${n} of ${confirmed} missing`);
    assert.ok(watch.lines.every((l) => l.kind === "incomplete"));
    for (const entry of all) {
      assert.equal(entry.observer, "on_order_created");
      assert.match(entry.delivery_id, /^[0-9a-f-]{36}$/);
    }
    const afterwards = deadLetter();
    await dlq.write([afterwards]);
    assert.deepEqual(await fileDlq(cfg, collecting()).get(afterwards.id), afterwards);
  });
});
