import type { Queryable } from "../db/driver.js";
import { loadMigrations } from "../db/migrate.js";
import { quoteIdent } from "../db/tables.js";
import { FraiseqlError } from "../errors.js";
import {
  type HttpServerOptions,
  type ReadyResult,
  type RouteHandler,
  startHttpServer,
} from "../graphql/server.js";
import type { Metrics } from "./metrics.js";

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  /** Interface to listen on. (Default: "127.0.0.1", as `[observability.prometheus] host`) */
  host?: string;
  /** Port; 0 picks a free one. (Default: 9090, as `[observability.prometheus] port`) */
  port?: number;
  metrics: Metrics;
  /** The check behind `GET /ready`, e.g. {@link readyCheck}. (Default: always ready) */
  ready?: HttpServerOptions["ready"];
  /** Receives errors of the handlers (a scrape that failed), for logging. (Default: none) */
  onError?: (err: unknown) => void;
}

/** A listening metrics server. */
export interface MetricsServer {
  /** `http://host:port` */
  readonly url: string;
  /** The real port (useful when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

/** The `GET /metrics` handler (Prometheus text format), also mounted on `serve`'s own port. */
export function metricsRoute(metrics: Metrics): RouteHandler {
  return async (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("method not allowed\n");
      return;
    }
    const text = await metrics.text();
    res.writeHead(200, {
      "content-type": metrics.contentType,
      "content-length": String(Buffer.byteLength(text)),
    });
    res.end(req.method === "HEAD" ? undefined : text);
  };
}

/**
 * Serves `GET /metrics` (Prometheus text format), `GET /health` (200 while the process runs) and
 * `GET /ready` (200 when `ready` passes, 503 with the reason otherwise), as the GraphQL server
 * does; anything else is 404.
 * @throws FraiseqlError FQL_CONFIG_INVALID (key `observability.prometheus.port`) when the address
 * cannot be bound.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { metrics } = options;
  try {
    const server = await startHttpServer({
      host: options.host ?? "127.0.0.1",
      port: options.port ?? 9090,
      ...(options.ready === undefined ? {} : { ready: options.ready }),
      ...(options.onError === undefined ? {} : { onError: options.onError }),
      routes: { "/metrics": metricsRoute(metrics) },
    });
    return { url: server.url, port: server.port, close: () => server.close() };
  } catch (err) {
    if (err instanceof FraiseqlError && err.code === "FQL_CONFIG_INVALID") {
      throw new FraiseqlError("FQL_CONFIG_INVALID", err.message, {
        key: "observability.prometheus.port",
        hint: "Another process (a Prometheus server?) may use this port: set [observability.prometheus] port.",
        cause: err.cause,
      });
    }
    throw err;
  }
}

let latestMigration: Promise<number> | undefined;

/**
 * The readiness of `GET /ready`: the database answers and every migration shipped with this
 * version is applied in `schema` (the internal schema, `[database] schema`).
 */
export function readyCheck(db: Queryable, schema: string): () => Promise<ReadyResult> {
  return async () => {
    latestMigration ??= loadMigrations().then((all) => Math.max(0, ...all.map((m) => m.id)));
    const want = await latestMigration;
    const table = `${quoteIdent(schema)}.migrations`;
    // Two statements: a query naming a table that does not exist fails at parse time.
    const { rows: exists } = await db.query<{ found: boolean }>(
      "SELECT to_regclass($1) IS NOT NULL AS found",
      [table],
    );
    let applied: number | null = null;
    if (exists[0]?.found) {
      const { rows } = await db.query<{ applied: number | null }>(`SELECT max(id) AS applied FROM ${table}`);
      applied = rows[0]?.applied ?? null;
    }
    if (applied === null || Number(applied) < want) {
      return { ready: false, reason: `migrations not applied (run fraiseql migrate)` };
    }
    return { ready: true };
  };
}
