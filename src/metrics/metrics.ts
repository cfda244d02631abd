/**
 * Prometheus metrics (SPEC §9). The dispatcher never imports this: it publishes on
 * `node:diagnostics_channel` (see `channels` in delivery/dispatcher.ts) and the counters and
 * histograms here subscribe; the gauges read the database and the DLQ when Prometheus scrapes.
 *
 * Every metric is labelled by bounded values only: observer names (from the config), failure
 * reasons, delivery statuses and entity names. Never a URL, an id or a payload value.
 */

import diagnostics from "node:diagnostics_channel";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ResolvedConfig } from "../config/types.js";
import type { Queryable } from "../db/driver.js";
import { internalTables } from "../db/tables.js";
import { type AttemptRecord, type ClaimedDelivery, channels } from "../delivery/dispatcher.js";
import type { RetryDecision } from "../delivery/retry.js";
import type { DlqBackend } from "../dlq/types.js";

/** What the metrics read at scrape time: the database and the DLQ of a running instance (a `Fraiseql`). */
export interface MetricsSource {
  readonly db: Queryable;
  readonly dlq: Pick<DlqBackend, "sizes">;
}

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** How long the queue gauges reuse one database snapshot, ms. (Default: 1000) */
  queueCacheMs?: number;
  /** How long `dlq_size` reuses one `dlq.sizes()` answer, ms. (Default: 5000) */
  dlqCacheMs?: number;
  /**
   * Also export the Node.js process metrics of prom-client (CPU, memory, event loop lag, GC),
   * under the same namespace (`fraiseql_process_cpu_seconds_total`, ...). (Default: true)
   */
  processMetrics?: boolean;
}

/** The metrics of one process, in their own prom-client registry (never the global one). */
export interface Metrics {
  /** The prom-client registry holding every metric below. */
  readonly registry: Registry;
  /** The metric name prefix, `[observability.prometheus] namespace`. */
  readonly namespace: string;
  /** `Content-Type` of {@link Metrics.text}'s output (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /** The Prometheus text exposition; reads the queue and the DLQ (cached) first. */
  text(): Promise<string>;
  /** Unsubscribes from the dispatcher's channels; the registry keeps its last values. */
  close(): void;
}

/** Histogram buckets of one HTTP attempt, seconds. */
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Histogram buckets of commit-to-delivery latency, seconds (retries make the tail long). */
export const LATENCY_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** The payload of `channels.settled`. */
interface SettledMessage {
  readonly delivery: ClaimedDelivery;
  readonly decision: RetryDecision;
}

/**
 * The payload of `channels.routed`. `events` is the number of events routed; per-entity counts
 * come from `entities` when the dispatcher sends them, or from `events` when it is the array of
 * routed events.
 */
interface RoutedMessage {
  readonly events: number | readonly { readonly entity: string }[];
  readonly entities?: Readonly<Record<string, number>>;
  readonly deliveries: readonly { readonly eventId: string; readonly observer: string }[];
}

interface QueueSnapshot {
  pending: number;
  running: number;
  waiting: number;
  oldestPendingSeconds: number;
  unrouted: number;
}

/** Entity label used when the routed message carries only a count. */
export const UNKNOWN_ENTITY = "unknown";

/**
 * Memoises an async read for `ttlMs`, its failure included (a broken database is asked again at
 * the next interval, not by every gauge of one scrape); concurrent callers share one read.
 */
function cached<T>(ttlMs: number, load: () => Promise<T>): () => Promise<T> {
  let at = Number.NEGATIVE_INFINITY;
  let value: Promise<T> | undefined;
  return () => {
    const now = Date.now();
    if (value === undefined || now - at >= ttlMs) {
      at = now;
      value = load();
      // Rejections are observed by the callers; this keeps an unobserved one from crashing.
      value.catch(() => {});
    }
    return value;
  };
}

/**
 * Creates the metrics of SPEC §9 in a new registry and subscribes them to the dispatcher's
 * diagnostics channels. `<ns>` is `[observability.prometheus] namespace` (default `fraiseql`).
 *
 * Counted per HTTP attempt (so that `failures / total` is a failure rate, as the
 * `WebhookFailureRate` alert reads it):
 * - `<ns>_webhook_total{observer}`: attempts made, whatever their outcome (requests refused
 *   before sending, reason `invalid_request`, count too);
 * - `<ns>_webhook_failures_total{observer,reason}`: attempts that failed, by reason (`timeout`,
 *   `connection`, `http_5xx`, `http_4xx`, `invalid_request`, ...);
 * - `<ns>_webhook_duration_seconds{observer,status}`: histogram of the time of attempts that
 *   were sent, `status` = `success` | `failure`;
 * - `<ns>_webhook_retries_total{observer}`: failed attempts after which a retry was scheduled.
 *
 * Per delivery, once its outcome is committed:
 * - `<ns>_dead_letters_total{observer,reason}`: deliveries dead-lettered;
 * - `<ns>_delivery_latency_seconds{observer}`: histogram of the time from the row change (its
 *   commit timestamp) to the successful attempt, retries included.
 *
 * Per routed batch: `<ns>_events_captured_total{entity}` (changes taken from the outbox) and
 * `<ns>_events_matched_total{observer}` (events for which the observer's condition held).
 *
 * Read at scrape time (cached): `<ns>_dlq_size{observer}` (every configured observer, 0 included),
 * `<ns>_queue_depth{status}` (`pending`, `running`, `waiting` deliveries),
 * `<ns>_queue_oldest_pending_seconds` (age of the oldest work that is due and not yet taken: a
 * due delivery, or a captured change not yet routed, which waits in the outbox while workers are busy;
 * 0 when none), `<ns>_events_unrouted` (captured changes not yet routed), and
 * `<ns>_metrics_read_errors_total{source}` when the database or DLQ could not be read (the gauges
 * keep their previous values then).
 */
export function createMetrics(
  config: ResolvedConfig,
  app: MetricsSource,
  options: MetricsOptions = {},
): Metrics {
  const ns = config.observability.prometheus.namespace;
  const registry = new Registry();
  const registers = [registry];
  const t = internalTables(config.database.schema);

  const webhookTotal = new Counter({
    name: `${ns}_webhook_total`,
    help: "Webhook attempts made (every HTTP request, retries included).",
    labelNames: ["observer"] as const,
    registers,
  });
  const duration = new Histogram({
    name: `${ns}_webhook_duration_seconds`,
    help: "Duration of webhook attempts, by outcome (success or failure).",
    labelNames: ["observer", "status"] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  const failures = new Counter({
    name: `${ns}_webhook_failures_total`,
    help: "Failed webhook attempts, by reason (timeout, connection, http_5xx, http_4xx, invalid_request, ...).",
    labelNames: ["observer", "reason"] as const,
    registers,
  });
  const retries = new Counter({
    name: `${ns}_webhook_retries_total`,
    help: "Failed webhook attempts after which a retry was scheduled.",
    labelNames: ["observer"] as const,
    registers,
  });
  const deadLetters = new Counter({
    name: `${ns}_dead_letters_total`,
    help: "Deliveries moved to the dead letter queue, by reason.",
    labelNames: ["observer", "reason"] as const,
    registers,
  });
  const latency = new Histogram({
    name: `${ns}_delivery_latency_seconds`,
    help: "Time from the row change to its successful delivery, retries included.",
    labelNames: ["observer"] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const captured = new Counter({
    name: `${ns}_events_captured_total`,
    help: "Row changes taken from the outbox and routed to observers.",
    labelNames: ["entity"] as const,
    registers,
  });
  const matched = new Counter({
    name: `${ns}_events_matched_total`,
    help: "Row changes that matched an observer (entity, event and condition).",
    labelNames: ["observer"] as const,
    registers,
  });
  const readErrors = new Counter({
    name: `${ns}_metrics_read_errors_total`,
    help: "Scrapes whose gauges could not be read from the database or the DLQ.",
    labelNames: ["source"] as const,
    registers,
  });

  const observerNames = config.observers.map((o) => o.name);
  // Every observer starts at 0, so rates and the DLQ alert have series before the first event.
  for (const observer of observerNames) {
    webhookTotal.labels(observer).inc(0);
    retries.labels(observer).inc(0);
    matched.labels(observer).inc(0);
  }

  const readDlq = cached(options.dlqCacheMs ?? 5_000, () =>
    app.dlq.sizes().catch((error: unknown) => {
      readErrors.labels("dlq").inc();
      throw error;
    }),
  );
  new Gauge({
    name: `${ns}_dlq_size`,
    help: "Entries in the dead letter queue, per observer.",
    labelNames: ["observer"] as const,
    registers,
    async collect() {
      const sizes = await readDlq().catch(() => undefined);
      if (!sizes) return;
      this.reset();
      for (const observer of observerNames) this.labels(observer).set(0);
      for (const [observer, n] of sizes) this.labels(observer).set(n);
    },
  });

  const loadQueue = async (): Promise<QueueSnapshot> => {
    const { rows } = await app.db.query<QueueSnapshot>(
      `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'running')::int AS running,
              count(*) FILTER (WHERE status = 'waiting')::int AS waiting,
              COALESCE(EXTRACT(EPOCH FROM now() - LEAST(
                min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()),
                (SELECT created_at FROM ${t.events} WHERE routed_at IS NULL ORDER BY id LIMIT 1))), 0)::float8
                AS "oldestPendingSeconds",
              (SELECT count(*) FROM ${t.events} WHERE routed_at IS NULL)::int AS unrouted
         FROM ${t.deliveries} WHERE status IN ('pending', 'running', 'waiting')`,
    );
    const row = rows[0];
    return {
      pending: Number(row?.pending ?? 0),
      running: Number(row?.running ?? 0),
      waiting: Number(row?.waiting ?? 0),
      oldestPendingSeconds: Math.max(0, Number(row?.oldestPendingSeconds ?? 0)),
      unrouted: Number(row?.unrouted ?? 0),
    };
  };
  const readQueue = cached(options.queueCacheMs ?? 1_000, () =>
    loadQueue().catch((error: unknown) => {
      readErrors.labels("queue").inc();
      throw error;
    }),
  );
  const queue = () => readQueue().catch(() => undefined);
  new Gauge({
    name: `${ns}_queue_depth`,
    help: "Deliveries not finished, by status: pending (due or waiting for a retry), running, waiting (behind an earlier action).",
    labelNames: ["status"] as const,
    registers,
    async collect() {
      const q = await queue();
      if (!q) return;
      this.labels("pending").set(q.pending);
      this.labels("running").set(q.running);
      this.labels("waiting").set(q.waiting);
    },
  });
  new Gauge({
    name: `${ns}_queue_oldest_pending_seconds`,
    help: "Age of the oldest due work not yet taken by a worker: a due delivery or a captured change not yet routed (0 when none).",
    registers,
    async collect() {
      const q = await queue();
      if (q) this.set(q.oldestPendingSeconds);
    },
  });
  new Gauge({
    name: `${ns}_events_unrouted`,
    help: "Captured row changes not yet routed to observers.",
    registers,
    async collect() {
      const q = await queue();
      if (q) this.set(q.unrouted);
    },
  });

  if (options.processMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: `${ns}_` });
    // Gauges named *_total break Prometheus naming rules (promtool check metrics); the same
    // counts are exported by type without the suffix (nodejs_active_handles{type}).
    for (const name of ["active_handles_total", "active_requests_total", "active_resources_total"]) {
      registry.removeSingleMetric(`${ns}_nodejs_${name}`);
    }
  }

  const onAttempt = (message: unknown) => {
    const { delivery, result, decision } = message as AttemptRecord;
    const observer = delivery.observer;
    webhookTotal.labels(observer).inc();
    const ok = decision.action === "succeeded";
    // A request refused before sending took no time: it would only pull the histogram to 0.
    if (result.outcome.kind !== "invalid_request") {
      duration.labels(observer, ok ? "success" : "failure").observe(result.durationMs / 1000);
    }
    if (decision.action !== "succeeded") failures.labels(observer, decision.reason).inc();
    if (decision.action === "retry") retries.labels(observer).inc();
  };
  const onSettled = (message: unknown) => {
    const { delivery, decision } = message as SettledMessage;
    if (decision.action === "dead") deadLetters.labels(delivery.observer, decision.reason).inc();
    else if (decision.action === "succeeded") {
      const changedAt = Date.parse(delivery.event.timestamp);
      if (Number.isFinite(changedAt)) {
        latency.labels(delivery.observer).observe(Math.max(0, Date.now() - changedAt) / 1000);
      }
    }
  };
  const onRouted = (message: unknown) => {
    const { events, entities, deliveries } = message as RoutedMessage;
    if (entities) {
      for (const [entity, n] of Object.entries(entities)) captured.labels(entity).inc(n);
    } else if (Array.isArray(events)) {
      for (const e of events as readonly { entity: string }[]) captured.labels(e.entity).inc();
    } else if (typeof events === "number" && events > 0) {
      captured.labels(UNKNOWN_ENTITY).inc(events);
    }
    // One event may give several deliveries to one observer (one per action): count it once.
    const seen = new Set<string>();
    for (const d of deliveries) {
      const key = `${d.observer}\u0000${d.eventId}`;
      if (seen.has(key)) continue;
      seen.add(key);
      matched.labels(d.observer).inc();
    }
  };

  const subscriptions: [string | symbol, (message: unknown) => void][] = [
    [channels.attempt.name, onAttempt],
    [channels.settled.name, onSettled],
    [channels.routed.name, onRouted],
  ];
  for (const [name, fn] of subscriptions) diagnostics.subscribe(name, fn);
  let closed = false;

  return {
    registry,
    namespace: ns,
    contentType: registry.contentType,
    async text() {
      // Read first, so that a failed read is counted in this scrape's read_errors_total.
      await Promise.allSettled([readQueue(), readDlq()]);
      return registry.metrics();
    },
    close() {
      if (closed) return;
      closed = true;
      for (const [name, fn] of subscriptions) diagnostics.unsubscribe(name, fn);
    },
  };
}
