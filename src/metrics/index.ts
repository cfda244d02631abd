/**
 * Observability: Prometheus metrics fed by the dispatcher's diagnostics channels, and the
 * `/metrics`, `/health`, `/ready` server of `[observability.prometheus]`.
 */

export {
  createMetrics,
  DURATION_BUCKETS,
  LATENCY_BUCKETS,
  type Metrics,
  type MetricsOptions,
  type MetricsSource,
  UNKNOWN_ENTITY,
} from "./metrics.js";
export {
  type MetricsServer,
  type MetricsServerOptions,
  metricsRoute,
  readyCheck,
  startMetricsServer,
} from "./server.js";
