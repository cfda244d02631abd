export { type AuthConfig, type AuthorizerOptions, createAuthorizer, verifyJwt } from "./auth.js";
export { pgErrorToGraphql } from "./errors.js";
export {
  DEFAULT_MAX_COMPLEXITY,
  DEFAULT_MAX_DEPTH,
  type OperationLimits,
  operationLimitRules,
} from "./limits.js";
export { GraphQLDateTime, GraphQLJSON } from "./scalars.js";
export {
  buildSchema,
  createGraphqlContext,
  DEFAULT_LIMIT,
  DEFAULT_MAX_LIMIT,
  type EntityOperationNames,
  type GraphqlContext,
  type GraphqlOptions,
  type MutationChange,
  operationNames,
  WebhookCollector,
} from "./schema.js";
export {
  createGraphqlHandler,
  DEFAULT_MAX_BODY_BYTES,
  type GraphqlHandlerOptions,
  type HttpServerOptions,
  type ReadyResult,
  type RouteHandler,
  type StartedHttpServer,
  startHttpServer,
} from "./server.js";
