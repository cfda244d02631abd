/**
 * What every figure of the benchmark sends and writes: one configuration (the seed's "order
 * created" pattern, signed), the same JSON body shape and headers for the raw baseline, and the
 * tables of the insert figure.
 */

import { parseConfig } from "../src/config/load.js";
import type { ResolvedConfig } from "../src/config/types.js";

/** Signing secret shared by the sender and (unused) the receiver. */
export const BENCH_SECRET = "bench-secret-0123456789abcdef";
/** Bearer token sent as a configured header, as in the seed pattern. */
export const BENCH_API_KEY = "bench-api-key";

/** Table drained by the drain figure (observed, INSERT). */
export const DRAIN_TABLE = "bench_orders";
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
name = "bench_order_created"
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

/** One single-row INSERT (`$1` email, `$2` total, `$3` status). */
export function singleInsertSql(table: string): string {
  return `INSERT INTO public.${table} (customer_email, total, status) VALUES ($1, $2, $3)`;
}
