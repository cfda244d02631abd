import { type Fraiseql, type OpenOptions, openFraiseql } from "../app.js";
import { loadConfig } from "../config/load.js";
import type { ResolvedConfig } from "../config/types.js";
import { internalTables } from "../db/tables.js";
import { waitForMutationDeliveries } from "../delivery/sync.js";
import { introspectTable } from "../entities/ddl.js";
import { createAuthorizer } from "../graphql/auth.js";
import { buildSchema } from "../graphql/schema.js";
import { createGraphqlHandler, type RouteHandler, startHttpServer } from "../graphql/server.js";
import { createLogger, type Logger, subscribeLogs } from "../log/index.js";
import {
  createMetrics,
  type Metrics,
  type MetricsServer,
  metricsRoute,
  readyCheck,
  startMetricsServer,
} from "../metrics/index.js";
import { parseCommandArgs } from "./args.js";
import { configWarnings } from "./check.js";

/** A started `serve` or `worker`: the pipeline, and the HTTP server when it serves GraphQL. */
export interface Service {
  readonly app: Fraiseql;
  /** Base URL of the HTTP server (`http://127.0.0.1:4000`), when started. */
  readonly url: string | undefined;
  /** Base URL of the metrics server, when `[observability.prometheus] enabled`. */
  readonly metricsUrl: string | undefined;
  /** The process logger. */
  readonly logger: Logger | undefined;
  close(): Promise<void>;
}

export interface ServiceOptions extends OpenOptions {
  /** Serve GraphQL, /health and /ready. (Default: true) */
  http?: boolean;
  /** Run the dispatcher. (Default: true) */
  dispatch?: boolean;
  /** Port override (0 picks a free one). */
  port?: number;
  /** Port override of /metrics (0 picks a free one). (Default: [observability.prometheus] port) */
  metricsPort?: number;
  /** Where the dispatcher's events are logged; false: nowhere. (Default: createLogger(config)) */
  logger?: Logger | false;
}

/** Opens, migrates and starts the pipeline and (optionally) the HTTP server. */
export async function startService(config: ResolvedConfig, options: ServiceOptions = {}): Promise<Service> {
  const app = await openFraiseql(config, options);
  let url: string | undefined;
  let server: { close(): Promise<void>; url: string } | undefined;
  const logger = options.logger === false ? undefined : (options.logger ?? createLogger(config));
  const unsubscribeLogs = logger ? subscribeLogs(logger) : () => {};
  let metrics: Metrics | undefined;
  let metricsServer: MetricsServer | undefined;
  const ready = readyCheck(app.db, config.database.schema);
  // What `fraiseql check` warns of (test_url set, webhooks unsigned, ...), in the log too.
  for (const warning of configWarnings(config)) logger?.warn(warning);
  try {
    await app.migrate();
    // Subscribed before the dispatcher starts, so that its first attempts are counted. `serve`
    // always has metrics (at /metrics on its own port); the Prometheus port is extra.
    if (config.observability.prometheus.enabled || options.http !== false)
      metrics = createMetrics(config, app);
    if (metrics && config.observability.prometheus.enabled) {
      metricsServer = await startMetricsServer({
        host: config.observability.prometheus.host,
        port: options.metricsPort ?? config.observability.prometheus.port,
        metrics,
        ready,
        onError: (err) => logger?.error({ err }, "metrics request failed"),
      });
    }
    if (options.dispatch !== false) app.dispatcher.start();
    if (options.http !== false) {
      const columns = new Map(
        await Promise.all(
          config.entities.map(
            async (e) => [e.name, await introspectTable(app.db, e.schema, e.table)] as const,
          ),
        ),
      );
      const tables = internalTables(config.database.schema);
      const authorize = createAuthorizer(config.server.auth);
      const schema = buildSchema(config.entities, {
        db: app.db,
        columns,
        // A synchronous mutation's wait finds its event among those after this bound.
        ...(config.webhooks.dispatch.async ? {} : { outboxSequence: tables.eventIds }),
        onError: (err, where) => logger?.error({ err, ...where }, "GraphQL operation failed"),
        afterMutation: async (change) => {
          app.dispatcher.wake();
          if (config.webhooks.dispatch.async) return undefined;
          const entity = config.entities.find((e) => e.name === change.entity);
          if (!entity) return undefined;
          return waitForMutationDeliveries(
            app.db,
            tables,
            entity,
            change,
            {
              timeoutMs: config.webhooks.dispatch.timeout,
              backgroundRetry: config.webhooks.dispatch.backgroundRetry,
            },
            () => app.dispatcher.wake(),
          );
        },
      });
      server = await startHttpServer({
        host: config.server.host,
        port: options.port ?? config.server.port,
        graphql: createGraphqlHandler(schema, {
          ...(authorize ? { authorize } : {}),
          onError: (err) => logger?.error({ err }, "GraphQL request failed"),
          maxBodyBytes: config.graphql.maxBodySize,
          maxDepth: config.graphql.maxDepth,
          maxComplexity: config.graphql.maxComplexity,
          introspection: config.graphql.introspection,
        }),
        ready,
        ...(metrics ? { routes: { "/metrics": guarded(authorize, metricsRoute(metrics)) } } : {}),
      });
      url = server.url;
    }
  } catch (err) {
    await server?.close().catch(() => {});
    await metricsServer?.close().catch(() => {});
    metrics?.close();
    await app.close().catch(() => {});
    unsubscribeLogs();
    throw err;
  }
  return {
    app,
    url,
    metricsUrl: metricsServer?.url,
    logger,
    async close() {
      await server?.close();
      // The dispatcher stops first: its last attempts are still counted and logged.
      await app.close();
      await metricsServer?.close();
      metrics?.close();
      unsubscribeLogs();
    },
  };
}

/** A route behind `[server.auth]`, like /graphql. */
function guarded(authorize: Authorize | undefined, route: RouteHandler): RouteHandler {
  if (!authorize) return route;
  return async (req, res) => {
    if (!(await authorize(req))) {
      res.writeHead(401, {
        "content-type": "text/plain; charset=utf-8",
        "www-authenticate": 'Bearer realm="fraiseql"',
      });
      res.end("missing or invalid credentials\n");
      return;
    }
    await route(req, res);
  };
}

type Authorize = NonNullable<ReturnType<typeof createAuthorizer>>;

function onShutdown(close: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    let closing = false;
    const stop = (signal: string) => {
      if (closing) return;
      closing = true;
      process.stderr.write(`${signal}: finishing in-flight deliveries, then exiting\n`);
      close().then(
        () => resolve(0),
        (err) => {
          process.stderr.write(`error while stopping: ${(err as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}

const COMMON = { config: { type: "string" } } as const;

export async function runServe(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    "serve",
    args,
    { ...COMMON, port: { type: "string" }, insecure: { type: "boolean" } },
    false,
  );
  const config = await loadConfig({
    ...(values.config === undefined ? {} : { path: values.config }),
    ...(values.insecure ? { insecure: true } : {}),
  });
  if (values.insecure && config.server.auth.mode === "none") {
    process.stderr.write(
      `WARNING: --insecure: the GraphQL API on ${config.server.host} accepts requests without credentials. Put it behind an authenticating proxy, or set [server.auth].\n`,
    );
  }
  const service = await startService(config, values.port === undefined ? {} : { port: Number(values.port) });
  process.stderr.write(
    `fraiseql serving GraphQL at ${service.url}/graphql (${service.app.db.kind}), dispatcher ${service.app.dispatcher.workerId}\n`,
  );
  return onShutdown(() => service.close());
}

export async function runWorker(args: string[]): Promise<number> {
  const { values } = parseCommandArgs("worker", args, COMMON, false);
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  const service = await startService(config, { http: false });
  process.stderr.write(
    `fraiseql worker ${service.app.dispatcher.workerId} running (${service.app.db.kind})\n`,
  );
  return onShutdown(() => service.close());
}

export async function runMigrate(args: string[]): Promise<number> {
  const { values } = parseCommandArgs("migrate", args, COMMON, false);
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  const app = await openFraiseql(config);
  try {
    const applied = await app.migrate();
    process.stdout.write(
      applied.length > 0
        ? `applied ${applied.join(", ")}\n`
        : "migrations up to date; triggers and tables checked\n",
    );
    return 0;
  } finally {
    await app.close();
  }
}
