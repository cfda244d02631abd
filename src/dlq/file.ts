import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { gunzip, gzip, constants as zlibConstants } from "node:zlib";
import type { DlqConfig } from "../config/types.js";
import { FraiseqlError, isFraiseqlError } from "../errors.js";
import {
  countByObserver,
  entriesOverLimits,
  mergeFailure,
  normalizeEntry,
  selectEntries,
  withReplay,
} from "./select.js";
import type { DeadLetter, DlqBackend } from "./types.js";

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * One line of the file. The file is append-only, so every change is a record and the current
 * state is the fold of all records in order (the last record for an id wins):
 * - `{"op":"put", ...entry}`: the whole entry as it now is (a new failure, a failure again, a replay);
 * - `{"op":"del","id":"dlq_...","at":"<ISO time>"}`: the entry is gone (resolved, purged, over limits).
 */
export type FileDlqRecord = ({ op: "put" } & DeadLetter) | { op: "del"; id: string; at: string };

/** A line the reader skipped. */
export interface UnreadableLine {
  /** Absolute path of the file. */
  readonly file: string;
  /** Byte offset of the line in the file (in the uncompressed text for `.gz` files). */
  readonly offset: number;
  /**
   * `incomplete`: the last line has no newline (a write cut short by a crash, or one still in
   * progress); `invalid`: a complete line that is not a record (such as the rest of a torn line).
   */
  readonly kind: "incomplete" | "invalid";
  /** The first 200 characters of the line. */
  readonly text: string;
}

/** Options of {@link fileDlq} beyond the config. */
export interface FileDlqOptions {
  /** Clock for daily rotation and `retention`. (Default: the system clock) */
  now?: () => Date;
  /**
   * Called once per skipped line and backend. (Default: a process warning with code
   * `FRAISEQL_DLQ_UNREADABLE_LINE`)
   */
  onUnreadableLine?: (line: UnreadableLine) => void;
  /** Flush each append to disk (`fdatasync`) before `write` resolves. (Default: true) */
  sync?: boolean;
}

interface Folded {
  readonly entries: Map<string, DeadLetter>;
  readonly byDelivery: Map<string, string>;
  /** Entry id -> the file (its rotation key) that holds the entry's latest `put`. */
  readonly origin: Map<string, string>;
}

interface RotatedFile {
  /** `<day>.<n>`: the same for a file and its gzipped form. */
  readonly key: string;
  readonly day: string;
  readonly n: number;
  /** Path actually read: the plain file while it exists, else the `.gz`. */
  readonly path: string;
  readonly gz: boolean;
  /** Every path of this key (plain and gzipped). */
  readonly paths: string[];
}

interface FileSignature {
  readonly path: string;
  readonly ino: number;
  readonly size: number;
}

interface Snapshot {
  readonly rotated: FileSignature[];
  active: { ino: number; offset: number } | undefined;
  readonly folded: Folded;
}

const ACTIVE_KEY = "active";
const NEWLINE = 0x0a;
/** A rotation lock older than this was left by a process that died while rotating. */
const STALE_LOCK_MS = 60_000;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function utcDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
}

async function ignoreMissing<T>(work: Promise<T>): Promise<T | undefined> {
  try {
    return await work;
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return undefined;
    throw err;
  }
}

function emptyFolded(): Folded {
  return { entries: new Map(), byDelivery: new Map(), origin: new Map() };
}

function isRecord(value: unknown): value is FileDlqRecord {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  if (r.op === "del") return typeof r.id === "string";
  return (
    r.op === "put" &&
    typeof r.id === "string" &&
    typeof r.delivery_id === "string" &&
    typeof r.observer === "string" &&
    typeof r.failed_at === "string"
  );
}

function apply(folded: Folded, record: FileDlqRecord, key: string): void {
  if (record.op === "del") {
    const prior = folded.entries.get(record.id);
    if (!prior) return;
    folded.entries.delete(record.id);
    folded.origin.delete(record.id);
    if (folded.byDelivery.get(prior.delivery_id) === record.id) folded.byDelivery.delete(prior.delivery_id);
    return;
  }
  const { op: _op, ...entry } = record;
  // One entry per delivery, as the PostgreSQL backend's unique index has it: should two processes
  // have written the same delivery under two ids, the later record wins.
  const other = folded.byDelivery.get(entry.delivery_id);
  if (other !== undefined && other !== entry.id) {
    folded.entries.delete(other);
    folded.origin.delete(other);
  }
  const prior = folded.entries.get(entry.id);
  if (
    prior &&
    prior.delivery_id !== entry.delivery_id &&
    folded.byDelivery.get(prior.delivery_id) === entry.id
  ) {
    folded.byDelivery.delete(prior.delivery_id);
  }
  folded.entries.set(entry.id, entry);
  folded.byDelivery.set(entry.delivery_id, entry.id);
  folded.origin.set(entry.id, key);
}

/**
 * The dead letter queue as JSON Lines at `path` (Default: ".fraiseql/webhook_dlq.jsonl"), with
 * `rotation = "daily"` (Default) moving the file to `<name>.<YYYY-MM-DD>.jsonl` on the first write
 * of a new UTC day, gzipped to `.jsonl.gz` when `compress` (Default: false).
 *
 * Each call appends one buffer of complete lines through one `O_APPEND` descriptor, so several
 * processes may share the file on a local disk; a reader skips (and reports) a line cut short by a
 * crash. Reads fold the active file and every rotated file, oldest first; the fold is kept in
 * memory and only the bytes appended since are read again while no file was rotated or removed.
 */
export function fileDlq(
  config: Pick<DlqConfig, "path" | "rotation" | "compress" | "retention" | "maxSize">,
  options: FileDlqOptions = {},
): DlqBackend {
  const active = resolve(config.path);
  const dir = dirname(active);
  const ext = extname(basename(active));
  const stem = basename(active).slice(0, basename(active).length - ext.length);
  const rotatedPattern = new RegExp(
    `^${escapeRegExp(stem)}\\.(\\d{4}-\\d{2}-\\d{2})(?:\\.(\\d+))?${escapeRegExp(ext)}(\\.gz)?$`,
  );
  const lockPath = `${active}.rotate.lock`;
  const now = options.now ?? (() => new Date());
  const sync = options.sync ?? true;
  const reported = new Set<string>();
  const report =
    options.onUnreadableLine ??
    ((line: UnreadableLine) => {
      process.emitWarning(
        `${line.file} at byte ${line.offset}: skipped ${line.kind === "incomplete" ? "an incomplete last line" : "a line that is not a DLQ record"}: ${line.text}`,
        { code: "FRAISEQL_DLQ_UNREADABLE_LINE" },
      );
    });
  let snapshot: Snapshot | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const rotatedName = (day: string, n: number) => `${stem}.${day}${n > 0 ? `.${n}` : ""}${ext}`;

  function fail(action: string, err: unknown): FraiseqlError {
    if (isFraiseqlError(err)) return err;
    const detail = err instanceof Error ? err.message : String(err);
    return new FraiseqlError("FQL_DLQ_WRITE", `the file DLQ at ${active} could not ${action}: ${detail}`, {
      cause: err,
      key: "webhooks.dlq.path",
    });
  }

  /** Runs one operation at a time in this process, so a read-modify-append is not interleaved. */
  function serial<T>(action: string, work: () => Promise<T>): Promise<T> {
    const run = queue.then(work, work).catch((err: unknown) => {
      throw fail(action, err);
    });
    queue = run.catch(() => undefined);
    return run;
  }

  async function listRotated(): Promise<RotatedFile[]> {
    const names = (await ignoreMissing(readdir(dir))) ?? [];
    const byKey = new Map<string, { day: string; n: number; plain?: string; gz?: string }>();
    for (const name of names) {
      const m = rotatedPattern.exec(name);
      if (!m?.[1]) continue;
      const n = m[2] === undefined ? 0 : Number(m[2]);
      const key = `${m[1]}.${n}`;
      const slot = byKey.get(key) ?? { day: m[1], n };
      if (m[3]) slot.gz = join(dir, name);
      else slot.plain = join(dir, name);
      byKey.set(key, slot);
    }
    return [...byKey.entries()]
      .map(([key, s]) => {
        // While both exist, compression has not finished: the plain file is the complete one.
        const path = (s.plain ?? s.gz) as string;
        const paths = [s.plain, s.gz].filter((p): p is string => p !== undefined);
        return { key, day: s.day, n: s.n, path, gz: s.plain === undefined, paths };
      })
      .sort((a, b) => (a.day === b.day ? a.n - b.n : a.day < b.day ? -1 : 1));
  }

  /** Folds the complete lines of `bytes` (which start at `base` in the file); returns bytes consumed. */
  function foldBytes(folded: Folded, bytes: Buffer, base: number, file: string, key: string): number {
    const end = bytes.lastIndexOf(NEWLINE) + 1;
    let start = 0;
    while (start < end) {
      const stop = bytes.indexOf(NEWLINE, start);
      const line = bytes.toString("utf8", start, stop).trim();
      if (line !== "") {
        let record: unknown;
        try {
          record = JSON.parse(line);
        } catch {
          record = undefined;
        }
        if (isRecord(record)) apply(folded, record, key);
        else skipped({ file, offset: base + start, kind: "invalid", text: line.slice(0, 200) });
      }
      start = stop + 1;
    }
    if (end < bytes.length) {
      const text = bytes.toString("utf8", end).trim();
      if (text !== "") skipped({ file, offset: base + end, kind: "incomplete", text: text.slice(0, 200) });
    }
    return end;
  }

  function skipped(line: UnreadableLine): void {
    const id = `${line.file}:${line.offset}:${line.kind}`;
    if (reported.has(id)) return;
    reported.add(id);
    report(line);
  }

  async function readRotated(file: RotatedFile): Promise<Buffer> {
    const raw = await readFile(file.path);
    if (!file.gz) return raw;
    // A sync flush at the end recovers what a truncated archive still holds instead of failing.
    return gunzipAsync(raw, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
  }

  async function readActive(from: number): Promise<{ ino: number; bytes: Buffer } | undefined> {
    const handle = await ignoreMissing(open(active, "r"));
    if (!handle) return undefined;
    try {
      const { ino, size } = await handle.stat();
      const bytes = Buffer.alloc(Math.max(0, size - from));
      let read = 0;
      while (read < bytes.length) {
        const { bytesRead } = await handle.read(bytes, read, bytes.length - read, from + read);
        if (bytesRead === 0) break;
        read += bytesRead;
      }
      return { ino, bytes: bytes.subarray(0, read) };
    } finally {
      await handle.close();
    }
  }

  async function loadOnce(): Promise<Folded> {
    const rotated = await listRotated();
    const signatures: FileSignature[] = [];
    for (const file of rotated) {
      const s = await stat(file.path);
      signatures.push({ path: file.path, ino: s.ino, size: s.size });
    }
    const activeStat = await ignoreMissing(stat(active));
    const cached = snapshot;
    const sameRotated =
      cached !== undefined &&
      cached.rotated.length === signatures.length &&
      cached.rotated.every(
        (s, i) =>
          s.path === signatures[i]?.path && s.ino === signatures[i]?.ino && s.size === signatures[i]?.size,
      );
    if (cached && sameRotated) {
      if (!activeStat && !cached.active) return cached.folded;
      if (
        activeStat &&
        cached.active &&
        activeStat.ino === cached.active.ino &&
        activeStat.size >= cached.active.offset
      ) {
        const tail = await readActive(cached.active.offset);
        if (tail && tail.ino === cached.active.ino) {
          cached.active.offset += foldBytes(
            cached.folded,
            tail.bytes,
            cached.active.offset,
            active,
            ACTIVE_KEY,
          );
          return cached.folded;
        }
      }
    }
    snapshot = undefined;
    const folded = emptyFolded();
    for (const file of rotated) foldBytes(folded, await readRotated(file), 0, file.path, file.key);
    const whole = await readActive(0);
    let activeState: Snapshot["active"];
    if (whole)
      activeState = { ino: whole.ino, offset: foldBytes(folded, whole.bytes, 0, active, ACTIVE_KEY) };
    snapshot = { rotated: signatures, active: activeState, folded };
    return folded;
  }

  async function load(): Promise<Folded> {
    // Another process may rotate or remove a file between listing and reading it: read again.
    for (let attempt = 1; ; attempt++) {
      try {
        return await loadOnce();
      } catch (err) {
        if (errnoCode(err) !== "ENOENT" || attempt >= 5) throw err;
        snapshot = undefined;
      }
    }
  }

  async function withRotationLock(work: () => Promise<void>): Promise<void> {
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    for (let attempt = 0; attempt < 2 && !handle; attempt++) {
      try {
        handle = await open(lockPath, "wx");
      } catch (err) {
        if (errnoCode(err) !== "EEXIST") throw err;
        const lock = await ignoreMissing(stat(lockPath));
        // Another process is rotating right now: this append goes to whichever file is active.
        if (lock && Date.now() - lock.mtimeMs < STALE_LOCK_MS) return;
        await ignoreMissing(unlink(lockPath));
      }
    }
    if (!handle) return;
    try {
      await work();
    } finally {
      await handle.close();
      await ignoreMissing(unlink(lockPath));
    }
  }

  async function compressRotated(): Promise<void> {
    for (const file of await listRotated()) {
      if (file.gz) continue;
      const plain = await ignoreMissing(readFile(file.path));
      if (!plain) continue;
      const target = `${file.path}.gz`;
      const temporary = `${target}.${process.pid}.tmp`;
      await writeFile(temporary, await gzipAsync(plain));
      // A process that opened the file just before it was rotated may still have appended to it.
      const after = await ignoreMissing(stat(file.path));
      if (!after || after.size !== plain.length) {
        await ignoreMissing(unlink(temporary));
        continue;
      }
      await rename(temporary, target);
      await ignoreMissing(unlink(file.path));
    }
  }

  async function rotateIfDue(): Promise<void> {
    const today = utcDay(now());
    const due = async () => {
      const s = await ignoreMissing(stat(active));
      return s && s.size > 0 && utcDay(s.mtime) < today ? s : undefined;
    };
    if (!(await due())) return;
    await withRotationLock(async () => {
      const current = await due();
      if (current) {
        const day = utcDay(current.mtime);
        const taken = new Set((await listRotated()).map((f) => f.key));
        let n = 0;
        while (taken.has(`${day}.${n}`)) n++;
        await rename(active, join(dir, rotatedName(day, n)));
      }
      if (config.compress) await compressRotated();
    });
  }

  async function append(records: readonly FileDlqRecord[]): Promise<void> {
    if (records.length === 0) return;
    await mkdir(dir, { recursive: true });
    if (config.rotation === "daily") await rotateIfDue();
    let buffer = Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    const handle = await open(active, "a+");
    try {
      const { size } = await handle.stat();
      if (size > 0) {
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        // A line torn by a crash must not swallow the first record of this batch.
        if (last[0] !== NEWLINE) buffer = Buffer.concat([Buffer.from("\n"), buffer]);
      }
      let written = 0;
      while (written < buffer.length) {
        const { bytesWritten } = await handle.write(buffer, written, buffer.length - written);
        written += bytesWritten;
      }
      if (sync) await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /** Removes rotated files, oldest first, while none holds the latest record of a live entry. */
  async function dropDeadRotatedFiles(): Promise<void> {
    const folded = await load();
    const live = new Set(folded.origin.values());
    for (const file of await listRotated()) {
      // A later file may hold deletions of entries put in an earlier one: only a prefix may go.
      if (live.has(file.key)) break;
      for (const path of file.paths) await ignoreMissing(unlink(path));
    }
  }

  async function remove(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const at = now().toISOString();
    await append(ids.map((id) => ({ op: "del", id, at })));
    await dropDeadRotatedFiles();
    return ids.length;
  }

  return {
    name: "file",
    ensure: (_tx) =>
      serial("be created", async () => {
        await mkdir(dir, { recursive: true });
      }),
    write: (entries, _tx) =>
      serial("write dead letters", async () => {
        if (entries.length === 0) return;
        const folded = await load();
        const batch = new Map<string, DeadLetter>();
        for (const entry of entries) {
          const failure = normalizeEntry(entry);
          const knownId = folded.byDelivery.get(failure.delivery_id);
          const existing =
            batch.get(failure.delivery_id) ??
            (knownId === undefined ? undefined : folded.entries.get(knownId));
          batch.set(failure.delivery_id, existing ? mergeFailure(existing, failure) : failure);
        }
        await append([...batch.values()].map((e) => ({ op: "put" as const, ...e })));
      }),
    // Copies, so that a caller changing an entry cannot change the fold kept in memory.
    list: (filter) =>
      serial("be read", async () => structuredClone(selectEntries((await load()).entries.values(), filter))),
    get: (id) => serial("be read", async () => structuredClone((await load()).entries.get(id))),
    markReplayed: (ids, at) =>
      serial("record a replay", async () => {
        const folded = await load();
        const updated = [...new Set(ids)]
          .map((id) => folded.entries.get(id))
          .filter((e): e is DeadLetter => e !== undefined)
          .map((e) => withReplay(e, at));
        await append(updated.map((e) => ({ op: "put" as const, ...e })));
        return updated;
      }),
    resolve: (deliveryIds, _tx) =>
      serial("resolve entries", async () => {
        const folded = await load();
        const ids = [...new Set(deliveryIds)]
          .map((d) => folded.byDelivery.get(d))
          .filter((id): id is string => id !== undefined);
        return remove(ids);
      }),
    enforceLimits: () =>
      serial("enforce retention and max_size", async () => {
        const over = entriesOverLimits((await load()).entries.values(), {
          retention: config.retention,
          maxSize: config.maxSize,
          now: now(),
        });
        return remove(over.map((e) => e.id));
      }),
    purge: (before) =>
      serial("purge entries", async () => {
        const old = [...(await load()).entries.values()].filter(
          (e) => Date.parse(e.failed_at) < before.getTime(),
        );
        return remove(old.map((e) => e.id));
      }),
    sizes: () => serial("be read", async () => countByObserver((await load()).entries.values())),
    close: async () => {
      await queue;
      snapshot = undefined;
    },
  };
}
