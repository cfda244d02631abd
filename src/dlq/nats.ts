import {
  type ConnectionOptions,
  headers,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type KvEntry,
  type NatsConnection,
  nanos,
  connect as natsConnect,
  type QueuedIterator,
  StorageType,
} from "nats";
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

/** Options of {@link natsDlq} beyond the config. */
export interface NatsDlqOptions {
  /** Opens the connection (a seam for tests and custom auth). (Default: `connect` from the `nats` package) */
  connect?: (options: ConnectionOptions) => Promise<NatsConnection>;
  /** Extra connection options (credentials, TLS, ...), merged over the backend's own. (Default: none) */
  connection?: Partial<ConnectionOptions>;
  /**
   * How long one request to NATS (and connecting) may take, ms; an operation fails with
   * `FQL_DLQ_WRITE` when one of its requests does not complete in time. (Default: 5000)
   */
  timeout?: number;
  /** Clock for `retention`. (Default: the system clock) */
  now?: () => Date;
}

interface Handles {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kv: KV;
}

/** Requests in flight at once within one operation. */
const CONCURRENCY = 16;
/** JetStream's default duplicate window: a write retried within it is not published twice. */
const DUPLICATE_WINDOW_MS = 120_000;
const KEY_SEGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * One segment of a KV key. Entry ids (`dlq_<hex>`) and delivery ids (UUIDs) are used as they are;
 * anything else is `=` + base64url, which cannot collide with a plain segment.
 */
function keySegment(value: string): string {
  return KEY_SEGMENT.test(value) ? value : `=${Buffer.from(value).toString("base64url")}`;
}

const entryKey = (id: string) => `e.${keySegment(id)}`;
const deliveryKey = (deliveryId: string) => `d.${keySegment(deliveryId)}`;

/** A subject token: characters NATS gives a meaning to (`.`, `*`, `>`, whitespace) become `_`. */
function subjectToken(value: string): string {
  const token = value.replace(/[^A-Za-z0-9_-]/g, "_");
  return token === "" ? "_" : token;
}

function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^@/]*@/g, "//");
}

function parseEntry(e: KvEntry): DeadLetter {
  return JSON.parse(e.string()) as DeadLetter;
}

function isLive(e: KvEntry | null): e is KvEntry {
  return e !== null && e.operation === "PUT";
}

/** Runs `work` over `items` with at most `CONCURRENCY` at a time; stops starting new ones after a failure. */
async function eachLimited<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
}

/**
 * The dead letter queue on NATS JetStream.
 *
 * - Stream `stream` (Default: "WEBHOOK_DLQ"), file storage, `max_age` = `retention`: every dead
 *   letter as it was written, one message per failure on subject
 *   `fraiseql.dlq.<stream>.<observer>`, for consumers that want to react to failures.
 * - KV bucket `bucket` (Default: "webhook-failures"): the current state of each entry under
 *   `e.<entry id>` (the DeadLetter JSON, replays included), and `d.<delivery id>` -> entry id, so a
 *   delivery that fails again after a replay returns to its entry.
 *
 * Both are created on first use when missing. `list`, `sizes`, `purge` and `enforceLimits` read
 * every entry of the bucket (one ordered consumer), which suits up to some 100,000 entries.
 *
 * The connection is opened lazily and reconnects without limit; an operation that cannot reach
 * NATS rejects with `FQL_DLQ_WRITE` after `timeout` instead of waiting for the server, and the next
 * one tries again.
 */
export async function natsDlq(
  config: Pick<DlqConfig, "url" | "stream" | "bucket" | "retention" | "maxSize">,
  options: NatsDlqOptions = {},
): Promise<DlqBackend> {
  const timeout = options.timeout ?? 5000;
  const now = options.now ?? (() => new Date());
  const connectTo = options.connect ?? natsConnect;
  const subjectPrefix = `fraiseql.dlq.${subjectToken(config.stream)}`;
  const where = `the NATS DLQ (stream ${config.stream}, bucket ${config.bucket} at ${withoutCredentials(config.url)})`;
  let opening: Promise<Handles> | undefined;
  let closed = false;

  async function ensureStream(jsm: JetStreamManager): Promise<void> {
    const subjects = `${subjectPrefix}.>`;
    let existing: Awaited<ReturnType<JetStreamManager["streams"]["info"]>> | undefined;
    try {
      existing = await jsm.streams.info(config.stream);
    } catch (err) {
      if ((err as { api_error?: { err_code?: number } }).api_error?.err_code !== 10059) throw err;
    }
    if (!existing) {
      await jsm.streams.add({
        name: config.stream,
        description: "fraiseql dead letters, one message per failure",
        subjects: [subjects],
        storage: StorageType.File,
        max_age: nanos(config.retention),
        duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, config.retention)),
      });
      return;
    }
    // An existing stream keeps its configuration; it only has to capture the DLQ's subjects.
    const current = existing.config.subjects ?? [];
    if (!current.includes(subjects)) {
      await jsm.streams.update(config.stream, { subjects: [...current, subjects] });
    }
  }

  async function open(): Promise<Handles> {
    const nc = await connectTo({
      servers: config.url.split(",").map((s) => s.trim()),
      name: "fraiseql-dlq",
      maxReconnectAttempts: -1,
      timeout,
      ...options.connection,
    });
    try {
      const jsm = await nc.jetstreamManager({ timeout });
      const js = nc.jetstream({ timeout });
      await ensureStream(jsm);
      const kv = await js.views.kv(config.bucket, { history: 1, storage: StorageType.File, timeout });
      return { nc, js, jsm, kv };
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  }

  function handles(): Promise<Handles> {
    if (closed) return Promise.reject(new Error("the backend is closed"));
    if (!opening) {
      const attempt = open();
      opening = attempt;
      const forget = () => {
        if (opening === attempt) opening = undefined;
      };
      attempt.then((h) => h.nc.closed().then(forget), forget);
    }
    return opening;
  }

  async function guard<T>(action: string, work: (h: Handles) => Promise<T>): Promise<T> {
    try {
      return await work(await handles());
    } catch (err) {
      if (isFraiseqlError(err)) throw err;
      const detail = err instanceof Error ? err.message : String(err);
      throw new FraiseqlError("FQL_DLQ_WRITE", `${where} could not ${action}: ${detail}`, {
        cause: err,
        key: "webhooks.dlq.url",
        hint: "Dead letters not written stay on their deliveries in PostgreSQL and are written again once NATS answers.",
      });
    }
  }

  /** Every live entry with its KV entry, read through one ordered consumer of the bucket. */
  async function scan(kv: KV): Promise<Map<string, KvEntry>> {
    const found = new Map<string, KvEntry>();
    let iterator: QueuedIterator<KvEntry> | undefined;
    let initialized = false;
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        iterator?.stop();
      }, timeout);
    };
    iterator = await kv.watch({
      key: "e.>",
      initializedFn: () => {
        initialized = true;
        iterator?.stop();
      },
    });
    if (initialized) iterator.stop();
    arm();
    try {
      for await (const e of iterator) {
        arm();
        if (e.operation === "PUT") found.set(e.key, e);
        else found.delete(e.key);
      }
    } finally {
      clearTimeout(timer);
      iterator.stop();
    }
    if (!initialized) {
      throw new Error(
        stalled ? `reading the bucket stalled for ${timeout}ms` : "reading the bucket ended early",
      );
    }
    return found;
  }

  async function scanEntries(kv: KV): Promise<DeadLetter[]> {
    return [...(await scan(kv)).values()].map(parseEntry);
  }

  async function removeEntries(h: Handles, entries: readonly DeadLetter[]): Promise<void> {
    const stream = `KV_${config.bucket}`;
    // A stream purge by subject leaves no delete marker behind, so the bucket does not grow with
    // tombstones. The entry goes first: an index without its entry is harmless, the reverse is not.
    const drop = (key: string) => h.jsm.streams.purge(stream, { filter: `$KV.${config.bucket}.${key}` });
    await eachLimited(entries, async (e) => {
      await drop(entryKey(e.id));
      const index = await h.kv.get(deliveryKey(e.delivery_id));
      if (isLive(index) && index.string() === e.id) await drop(deliveryKey(e.delivery_id));
    });
  }

  async function writeOne(h: Handles, failure: DeadLetter): Promise<void> {
    const index = await h.kv.get(deliveryKey(failure.delivery_id));
    const knownId = isLive(index) ? index.string() : undefined;
    const stored = knownId === undefined ? null : await h.kv.get(entryKey(knownId));
    const next = isLive(stored) ? mergeFailure(parseEntry(stored), failure) : failure;
    const json = JSON.stringify(next);
    // Index before entry: a write cut short leaves at worst an index to a missing entry, which
    // the next write of that delivery repairs.
    if (knownId !== next.id) await h.kv.put(deliveryKey(next.delivery_id), next.id);
    await h.kv.put(entryKey(next.id), json);
    const hdrs = headers();
    hdrs.set("FraiseQL-Entry-Id", next.id);
    hdrs.set("FraiseQL-Delivery", next.delivery_id);
    hdrs.set("FraiseQL-Reason", next.reason);
    await h.js.publish(`${subjectPrefix}.${subjectToken(next.observer)}`, json, {
      msgID: `${next.delivery_id}:${next.attempts}:${next.failed_at}`,
      headers: hdrs,
      timeout,
    });
  }

  async function replayOne(h: Handles, id: string, at: Date): Promise<DeadLetter | undefined> {
    // Compare-and-set on the entry's revision, so replays recorded by two processes both count.
    for (let attempt = 1; ; attempt++) {
      const stored = await h.kv.get(entryKey(id));
      if (!isLive(stored)) return undefined;
      const next = withReplay(parseEntry(stored), at);
      try {
        await h.kv.update(entryKey(id), JSON.stringify(next), stored.revision);
        return next;
      } catch (err) {
        if (attempt >= 5) throw err;
      }
    }
  }

  // Connect in the background so the first dead letter does not wait for it; failures surface
  // on the operations.
  handles().catch(() => undefined);

  return {
    name: "nats",
    ensure: (_tx) => guard("create its stream and bucket", async () => undefined),
    write: (entries, _tx) =>
      guard("write dead letters", async (h) => {
        // Several failures of one delivery in a batch collapse into one, the last winning.
        const batch = new Map<string, DeadLetter>();
        for (const entry of entries) {
          const failure = normalizeEntry(entry);
          const earlier = batch.get(failure.delivery_id);
          batch.set(failure.delivery_id, earlier ? mergeFailure(earlier, failure) : failure);
        }
        await eachLimited([...batch.values()], (e) => writeOne(h, e));
      }),
    list: (filter) => guard("list dead letters", async (h) => selectEntries(await scanEntries(h.kv), filter)),
    get: (id) =>
      guard("read a dead letter", async (h) => {
        const stored = await h.kv.get(entryKey(id));
        return isLive(stored) ? parseEntry(stored) : undefined;
      }),
    markReplayed: (ids, at) =>
      guard("record a replay", async (h) => {
        const updated: (DeadLetter | undefined)[] = [];
        const unique = [...new Set(ids)];
        await eachLimited(
          unique.map((id, i) => ({ id, i })),
          async ({ id, i }) => {
            updated[i] = await replayOne(h, id, at);
          },
        );
        return updated.filter((e): e is DeadLetter => e !== undefined);
      }),
    resolve: (deliveryIds, _tx) =>
      guard("resolve dead letters", async (h) => {
        const found: DeadLetter[] = [];
        await eachLimited([...new Set(deliveryIds)], async (deliveryId) => {
          const index = await h.kv.get(deliveryKey(deliveryId));
          if (!isLive(index)) return;
          const stored = await h.kv.get(entryKey(index.string()));
          if (isLive(stored)) found.push(parseEntry(stored));
        });
        await removeEntries(h, found);
        return found.length;
      }),
    enforceLimits: () =>
      guard("enforce retention and max_size", async (h) => {
        const over = entriesOverLimits(await scanEntries(h.kv), {
          retention: config.retention,
          maxSize: config.maxSize,
          now: now(),
        });
        await removeEntries(h, over);
        return over.length;
      }),
    purge: (before) =>
      guard("purge dead letters", async (h) => {
        const old = (await scanEntries(h.kv)).filter((e) => Date.parse(e.failed_at) < before.getTime());
        await removeEntries(h, old);
        return old.length;
      }),
    sizes: () => guard("count dead letters", async (h) => countByObserver(await scanEntries(h.kv))),
    close: async () => {
      closed = true;
      const pending = opening;
      opening = undefined;
      const h = await pending?.catch(() => undefined);
      if (!h || h.nc.isClosed()) return;
      // Drain flushes what is buffered; while the server is away it cannot, so it is bounded.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        h.nc.drain().catch(() => undefined),
        new Promise((resolve) => {
          timer = setTimeout(resolve, timeout);
        }),
      ]);
      clearTimeout(timer);
      if (!h.nc.isClosed()) await h.nc.close().catch(() => undefined);
    },
  };
}
