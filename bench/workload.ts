/**
 * What every figure of the benchmark sends and writes: one configuration (the seed's "order
 * created" pattern, signed), the same JSON body shape and headers for the raw baseline, and the
 * tables of the insert figure.
 */

import { openFraiseql } from "../src/app.js";
import { eventTimeSql } from "../src/capture/outbox.js";
import { captureTriggerInstalled } from "../src/capture/triggers.js";
import { parseConfig } from "../src/config/load.js";
import type { ResolvedConfig } from "../src/config/types.js";
import type { Database } from "../src/db/driver.js";
import { deliveryId } from "../src/observers/runtime.js";

/** Signing secret shared by the sender and (unused) the receiver. */
export const BENCH_SECRET = "bench-secret-0123456789abcdef";
/** Bearer token sent as a configured header, as in the seed pattern. */
export const BENCH_API_KEY = "bench-api-key";

/** Table drained by the drain figure (observed, INSERT). */
export const DRAIN_TABLE = "bench_orders";
/** The observer on {@link DRAIN_TABLE}, in the in-process drain and in the workers' files. */
export const DRAIN_OBSERVER = "bench_order_created";
/** Insert figure: the table without a capture trigger. */
export const PLAIN_TABLE = "bench_insert_plain";
/** Insert figure: the identical table with the capture trigger of one observer. */
export const OBSERVED_TABLE = "bench_insert_observed";

const FIELDS = `
[entities.fields]
id = "ID"
customer_email = "String"
total = "Float"
status = "String"
`;

// Three identical tables: one drained, two for the insert figure (only one of them observed).
// `poll_interval = "10ms"` as the drain figure asks; everything else keeps its default
// (concurrency 256, route batch 500, undici Pool of 64 connections).
const TOML = `
[[entities]]
name = "BenchOrder"
table = "${DRAIN_TABLE}"
${FIELDS}
[[entities]]
name = "BenchInsertPlain"
table = "${PLAIN_TABLE}"
${FIELDS}
[[entities]]
name = "BenchInsertObserved"
table = "${OBSERVED_TABLE}"
${FIELDS}

[[observers]]
name = "${DRAIN_OBSERVER}"
entity = "BenchOrder"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/hooks/orders"
method = "POST"
headers = { Authorization = "Bearer \${API_KEY}" }
body = { event = "order.created", order_id = "{{ id }}", customer_email = "{{ customer_email }}", total = "{{ total }}", timestamp = "{{ _timestamp }}" }

[[observers]]
name = "bench_insert_observed"
entity = "BenchInsertObserved"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = "\${RECEIVER}/hooks/inserts"

[webhooks.signing]
enabled = true
secret = "\${SECRET}"

[webhooks.dispatch]
poll_interval = "10ms"
`;

/** The benchmark's resolved configuration, webhooks pointed at `receiverUrl`. */
export function benchConfig(receiverUrl: string): ResolvedConfig {
  return parseConfig(TOML, {
    file: "bench.toml",
    env: { RECEIVER: receiverUrl, API_KEY: BENCH_API_KEY, SECRET: BENCH_SECRET },
  });
}

/** The body the drain's template renders for row `i`, built by hand for the raw baseline. */
export function orderBody(i: number): string {
  return JSON.stringify({
    event: "order.created",
    order_id: i,
    customer_email: `user${i}@example.com`,
    total: (i % 1000) + 0.99,
    timestamp: new Date().toISOString(),
  });
}

/** `INSERT ... SELECT` of `$1` rows into a benchmark table: one event per row when observed. */
export function bulkInsertSql(table: string): string {
  return `INSERT INTO public.${table} (customer_email, total, status)
          SELECT 'user' || g || '@example.com', (g % 1000) + 0.99, 'pending' FROM generate_series(1, $1::int) AS g`;
}

/**
 * Routes every unrouted event in SQL, as the dispatcher's routing would for the drain's observer:
 * one pending delivery per event, the events marked routed. Each gets the id routing would give
 * it (`deliveryId`): the first 80 bits from `fraiseql.event_delivery_id_bound` (the capture
 * time and the event id as a counter), then the SHA-256 of installation, event, observer and
 * action. The deliveries then wait to be claimed. One id is checked against `deliveryId`, so the
 * queue looks to PostgreSQL as the product's would.
 */
export async function queueDeliveries(db: Database): Promise<void> {
  await db.query(
    `WITH routed AS (
       UPDATE fraiseql.events SET routed_at = now() WHERE routed_at IS NULL RETURNING id, created_at
     ), parts AS (
       SELECT r.id, uuid_send(fraiseql.event_delivery_id_bound(r.id, r.created_at, false)) AS b,
              sha256(convert_to(s.instance_id::text, 'UTF8') || '\\x00'::bytea || convert_to(r.id::text, 'UTF8')
                     || '\\x00'::bytea || convert_to($1, 'UTF8') || '\\x00'::bytea || convert_to('0', 'UTF8')) AS h
         FROM routed r CROSS JOIN fraiseql.dispatch_state s
     )
     INSERT INTO fraiseql.deliveries (id, event_id, observer, action_index, status)
     SELECT encode(overlay(set_byte(b, 10, get_byte(b, 10) | (get_byte(h, 10) & 15))
                           PLACING substring(h FROM 12 FOR 5) FROM 12 FOR 5), 'hex')::uuid,
            id, $1, 0, 'pending'
       FROM parts`,
    [DRAIN_OBSERVER],
  );
  const { rows } = await db.query<{ id: string; event_id: string; captured: string; instance: string }>(
    `SELECT d.id::text, d.event_id::text, ${eventTimeSql("e.created_at")} AS captured, s.instance_id::text AS instance
       FROM fraiseql.deliveries d JOIN fraiseql.events e ON e.id = d.event_id CROSS JOIN fraiseql.dispatch_state s
      ORDER BY d.event_id LIMIT 1`,
  );
  const row = rows[0];
  if (row) {
    const expected = deliveryId(row.instance, row.event_id, Date.parse(row.captured), DRAIN_OBSERVER, 0);
    if (row.id !== expected) throw new Error(`queued delivery id ${row.id}, routing would give ${expected}`);
  }
}

/** The statistics of the outbox and the queue, as autovacuum would have them after a backlog built up. */
export async function analyzeQueue(db: Database): Promise<void> {
  await db.query("VACUUM ANALYZE fraiseql.events");
  await db.query("VACUUM ANALYZE fraiseql.deliveries");
}

/** Empties the drain's table and the pipeline's tables, for the next drain on the same database. */
export async function emptyDrainTables(db: Database): Promise<void> {
  await db.exec(
    `TRUNCATE fraiseql.delivery_attempts, fraiseql.deliveries, fraiseql.events, public.${DRAIN_TABLE}`,
  );
}

/** One single-row INSERT (`$1` email, `$2` total, `$3` status). */
export function singleInsertSql(table: string): string {
  return `INSERT INTO public.${table} (customer_email, total, status) VALUES ($1, $2, $3)`;
}

/** Table of the latency figure: one row per event, `sent_ms` set by the server at insert time. */
export const LATENCY_TABLE = "bench_latency";

/** What a worker's configuration file holds, for {@link workerToml}. */
export interface WorkerTomlOptions {
  /** `[database] url`. */
  readonly databaseUrl: string;
  readonly receiverUrl: string;
  /**
   * - `orders`: the drain's observer on `bench_orders` (the seed's templated body, bearer header);
   * - `orders-array`: the same events with the order inside an `orders` array, the body shape a
   *   batched action sends (one element per event), so that the batching figure compares like
   *   with like;
   * - `latency`: an observer on `bench_latency` whose body carries the row's `id` and `sent_ms`.
   */
  readonly observer: "orders" | "orders-array" | "latency";
  /** `batch = { size, timeout }` on the action. (Default: none) */
  readonly batch?: { readonly size: number; readonly timeout: string };
  /** `[webhooks.dispatch] poll_interval`. (Default: not written, so the product default, 200ms) */
  readonly pollInterval?: string;
  /** `[webhooks.dispatch] lease`. (Default: not written, so the product default, 5s) */
  readonly lease?: string;
  /** `[webhooks.retry] max_attempts`. (Default: not written, so the product default, 3) */
  readonly maxAttempts?: number;
  /** `[webhooks.rate_limiting]`. (Default: not written, so rate limiting stays off) */
  readonly rateLimit?: { readonly maxPerSecond: number; readonly burst: number };
}

function tomlString(value: string): string {
  return JSON.stringify(value);
}

/**
 * The text of a worker's `fraiseql.toml`: the database, the three tables of the benchmark (so that
 * every figure's database has the same schema), one observer, signing on, and only the dispatch
 * keys asked for; everything else keeps the product's defaults.
 */
export function workerToml(options: WorkerTomlOptions): string {
  const receiver = options.receiverUrl;
  const batch = options.batch
    ? `\nbatch = { size = ${options.batch.size}, timeout = "${options.batch.timeout}" }`
    : "";
  let observer: string;
  if (options.observer === "latency") {
    observer = `
[[observers]]
name = "bench_latency"
entity = "BenchLatency"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = ${tomlString(`${receiver}/hooks/latency`)}
body = { id = "{{ id }}", sent_ms = "{{ sent_ms }}" }${batch}
`;
  } else {
    const order = `{ order_id = "{{ id }}", customer_email = "{{ customer_email }}", total = "{{ total }}" }`;
    const body =
      options.observer === "orders"
        ? `{ event = "order.created", order_id = "{{ id }}", customer_email = "{{ customer_email }}", total = "{{ total }}", timestamp = "{{ _timestamp }}" }`
        : `{ event = "orders.created", orders = [${order}] }`;
    observer = `
[[observers]]
name = "${DRAIN_OBSERVER}"
entity = "BenchOrder"
event = "INSERT"

[[observers.actions]]
type = "webhook"
url = ${tomlString(`${receiver}/hooks/orders`)}
method = "POST"
headers = { Authorization = "Bearer ${BENCH_API_KEY}" }
body = ${body}${batch}
`;
  }
  const sections: string[] = [];
  const dispatch = [
    options.pollInterval === undefined ? "" : `poll_interval = "${options.pollInterval}"`,
    options.lease === undefined ? "" : `lease = "${options.lease}"`,
  ].filter((line) => line !== "");
  if (dispatch.length > 0) sections.push(`[webhooks.dispatch]\n${dispatch.join("\n")}`);
  if (options.maxAttempts !== undefined)
    sections.push(`[webhooks.retry]\nmax_attempts = ${options.maxAttempts}`);
  if (options.rateLimit !== undefined) {
    const { maxPerSecond, burst } = options.rateLimit;
    sections.push(
      `[webhooks.rate_limiting]\nenabled = true\nmax_per_second = ${maxPerSecond}\nburst = ${burst}`,
    );
  }
  return `[database]
url = ${tomlString(options.databaseUrl)}

[[entities]]
name = "BenchOrder"
table = "${DRAIN_TABLE}"
${FIELDS}
[[entities]]
name = "BenchLatency"
table = "${LATENCY_TABLE}"
[entities.fields]
id = "ID"
sent_ms = "Float"
${observer}
[webhooks.signing]
enabled = true
secret = ${tomlString(BENCH_SECRET)}
${sections.map((section) => `\n${section}\n`).join("")}`;
}

/** {@link workerToml}, resolved as the worker resolves it (to open the same pipeline in this process). */
export function workerConfig(options: WorkerTomlOptions): ResolvedConfig {
  return parseConfig(workerToml(options), { file: "bench-worker.toml", env: {} });
}

/** Migrates a benchmark database (internal tables, entity tables, capture triggers) and checks the triggers. */
export async function prepareDatabase(db: Database, receiverUrl: string): Promise<void> {
  const config = benchConfig(receiverUrl);
  const app = await openFraiseql(config, { db });
  try {
    await app.migrate();
    const [drained, plain, observed] = config.entities;
    if (!drained || !plain || !observed) throw new Error("benchmark configuration lost an entity");
    if (!(await captureTriggerInstalled(db, drained)) || !(await captureTriggerInstalled(db, observed))) {
      throw new Error("capture trigger missing on an observed benchmark table");
    }
    if (await captureTriggerInstalled(db, plain)) throw new Error(`capture trigger found on ${plain.table}`);
  } finally {
    await app.close();
  }
}
