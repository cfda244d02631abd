/**
 * fraiseql: observers and signed, retried, dead-lettered webhooks for PostgreSQL row changes.
 *
 * The pipeline, in the order of the folders: capture (trigger + outbox) -> observers
 * (conditions, templates, routing) -> delivery (queue, HTTP, retry, signing) -> dlq.
 */

export { type Fraiseql, migrateAll, type OpenOptions, openFraiseql } from "./app.js";
export { type Service, type ServiceOptions, startService } from "./cli/serve.js";
export {
  type ConfigDef,
  type ConfigInput,
  defineConfig,
  defineEntity,
  type EntityDef,
  type EntityInput,
  type ObserverDef,
  type ObserverInput,
  observer,
  type WebhookDef,
  type WebhookInput,
  webhook,
} from "./config/define.js";
export { loadConfig, parseConfig } from "./config/load.js";
export type * from "./config/types.js";
export type { Database, Queryable } from "./db/driver.js";
export { openDatabase, openPglite, openPostgres } from "./db/index.js";
export { channels as diagnosticsChannels, Dispatcher } from "./delivery/dispatcher.js";
export { decryptPayload, decryptValue, encryptBody, parseEncryptionKey } from "./delivery/encryption.js";
export { decideRetry, parseRetryAfter, retryDelay } from "./delivery/retry.js";
export {
  assertWebhook,
  signatureHeaders,
  type VerifyOptions,
  type VerifyResult,
  verifyWebhook,
} from "./delivery/signing.js";
export { type ReplayOptions, type ReplayResult, replayDlq } from "./dlq/replay.js";
export type { DeadLetter, DlqBackend, DlqListFilter } from "./dlq/types.js";
export { ERROR_CODES, type ErrorCode, FraiseqlError, isFraiseqlError } from "./errors.js";
export {
  createLogger,
  type Logger,
  type LoggerOptions,
  type SubscribeLogsOptions,
  subscribeLogs,
} from "./log/index.js";
export {
  createMetrics,
  type Metrics,
  type MetricsOptions,
  type MetricsServer,
  type MetricsServerOptions,
  readyCheck,
  startMetricsServer,
} from "./metrics/index.js";
export { compileCondition } from "./observers/condition.js";
export { compileBodyTemplate, compileStringTemplate } from "./observers/template.js";
