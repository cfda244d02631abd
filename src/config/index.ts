/**
 * The config: `fraiseql.toml` and the TypeScript API, validated by one schema into a frozen
 * {@link ResolvedConfig}. See docs/configuration.md for every key.
 */

export {
  type BatchInput,
  type ConfigDef,
  type ConfigInput,
  type DatabaseInput,
  type Definition,
  type Duration,
  defineConfig,
  defineEntity,
  type EncryptionInput,
  type EntityDef,
  type EntityInput,
  type FieldType,
  isDefinition,
  type ObservabilityInput,
  type ObserverDef,
  type ObserverInput,
  observer,
  type RetryInput,
  type ServerInput,
  type Size,
  type WebhookDef,
  type WebhookInput,
  type WebhooksInput,
  webhook,
} from "./define.js";
export { type EnvContext, expandEnv, hasEnvReference } from "./env.js";
export {
  CONFIG_FILE_NAME,
  collectDefinitions,
  type ExtraDefinitions,
  type LoadConfigOptions,
  loadConfig,
  type ParseConfigOptions,
  parseConfig,
} from "./load.js";
export { formatPath, locateKey, type PathSegment, type SourcePosition } from "./locate.js";
export {
  defaultTableName,
  type ResolveOptions,
  resolveConfig,
  resolveIncludes,
} from "./schema.js";
export * from "./types.js";
export { formatDuration, parseDuration, parseSize } from "./units.js";
