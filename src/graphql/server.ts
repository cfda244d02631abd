import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { GraphQLError, type GraphQLSchema } from "graphql";
import { createHandler } from "graphql-http";
import { FraiseqlError } from "../errors.js";
import { operationLimitRules } from "./limits.js";
import { createGraphqlContext, type GraphqlContext } from "./schema.js";

/** A node request listener. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** Options of {@link createGraphqlHandler}. */
export interface GraphqlHandlerOptions {
  /** Largest accepted request body in bytes; larger bodies get 413. (Default: 1048576, 1 MiB) */
  maxBodyBytes?: number;
  /**
   * Decides whether a request may run operations (see `createAuthorizer`); false answers 401.
   * (Default: none: every request is allowed)
   */
  authorize?: (req: IncomingMessage) => boolean | Promise<boolean>;
  /** Receives unexpected errors (bugs, failed writes of the response), for logging. (Default: none) */
  onError?: (err: unknown) => void;
  /** Deepest field nesting of an operation, introspection excluded (`{ orders { id } }` is 2). (Default: 10) */
  maxDepth?: number;
  /**
   * Largest operation complexity: each field counts 1, times the page size (`limit`, else 100)
   * of every list field above it. (Default: 50000)
   */
  maxComplexity?: number;
  /** Whether `__schema` and `__type` may be queried. (Default: true) */
  introspection?: boolean;
  /** The `maxLimit` given to `buildSchema`, to cost lists as they will be served. (Default: 1000) */
  maxListLimit?: number;
}

/** Default of {@link GraphqlHandlerOptions.maxBodyBytes}. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off("data", onData);
        req.off("end", onEnd);
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => resolve(Buffer.concat(chunks).toString("utf8"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", reject);
  });
}

function tooLarge(res: ServerResponse, limit: number): void {
  // The rest of the body is never read: closing the connection is cheaper than draining it.
  sendJson(
    res,
    413,
    {
      errors: [{ message: `request body exceeds ${limit} bytes`, extensions: { code: "FQL_GRAPHQL_INPUT" } }],
    },
    { connection: "close" },
  );
}

/**
 * Hides what a client must not see: an error thrown by a resolver that is not a GraphQLError
 * (a bug) becomes "internal error"; errors without a code (syntax, validation, coercion) get
 * FQL_GRAPHQL_INPUT.
 */
function formatError(onError: ((err: unknown) => void) | undefined) {
  return (err: Readonly<GraphQLError | Error>): GraphQLError | Error => {
    if (!(err instanceof GraphQLError)) return err;
    const original = err.originalError;
    if (original !== undefined && !(original instanceof GraphQLError)) {
      onError?.(original);
      return new GraphQLError("internal error", {
        ...(err.nodes === undefined ? {} : { nodes: err.nodes }),
        ...(err.path === undefined ? {} : { path: err.path }),
        extensions: { code: "FQL_DB_QUERY" },
      });
    }
    if (err.extensions.code !== undefined) return err;
    return new GraphQLError(err.message, {
      ...(err.nodes === undefined ? {} : { nodes: err.nodes }),
      ...(err.source === undefined ? {} : { source: err.source }),
      ...(err.positions === undefined ? {} : { positions: err.positions }),
      ...(err.path === undefined ? {} : { path: err.path }),
      extensions: { ...err.extensions, code: "FQL_GRAPHQL_INPUT" },
    });
  };
}

/**
 * The GraphQL-over-HTTP endpoint for a schema from `buildSchema`: `POST` with a JSON body
 * (`{"query","variables","operationName"}`) for queries and mutations, `GET ?query=` for queries
 * only. Responses are JSON; what `afterMutation` returned is under `extensions.webhooks`. Bodies
 * over `maxBodyBytes` get 413, unauthorised requests 401; operations deeper than `maxDepth`, more
 * complex than `maxComplexity`, or introspecting while `introspection` is off are refused with
 * a validation error (FQL_GRAPHQL_INPUT) before anything runs.
 */
export function createGraphqlHandler(
  schema: GraphQLSchema,
  options: GraphqlHandlerOptions = {},
): RouteHandler {
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const handle = createHandler<IncomingMessage, undefined, GraphqlContext>({
    schema,
    context: () => createGraphqlContext(),
    formatError: formatError(options.onError),
    validationRules: (_req, args, specified) => [
      ...specified,
      ...operationLimitRules(
        {
          ...(options.maxDepth === undefined ? {} : { maxDepth: options.maxDepth }),
          ...(options.maxComplexity === undefined ? {} : { maxComplexity: options.maxComplexity }),
          ...(options.introspection === undefined ? {} : { introspection: options.introspection }),
          ...(options.maxListLimit === undefined ? {} : { maxListLimit: options.maxListLimit }),
        },
        args.variableValues ?? {},
      ),
    ],
    onOperation: (_req, args, result) => {
      const webhooks = args.contextValue?.webhooks.extension;
      if (webhooks === undefined) return;
      return { ...result, extensions: { ...result.extensions, webhooks } };
    },
  });

  return async (req, res) => {
    try {
      if (options.authorize !== undefined && !(await options.authorize(req))) {
        sendJson(
          res,
          401,
          {
            errors: [{ message: "missing or invalid credentials", extensions: { code: "FQL_UNAUTHORIZED" } }],
          },
          { "www-authenticate": 'Bearer realm="fraiseql"' },
        );
        return;
      }
      let body: string | null = null;
      if (req.method === "POST") {
        try {
          body = await readBody(req, limit);
        } catch (err) {
          if (err instanceof BodyTooLarge) return tooLarge(res, limit);
          throw err;
        }
      }
      const [text, init] = await handle({
        method: req.method ?? "GET",
        url: req.url ?? "/",
        headers: req.headers,
        body,
        raw: req,
        context: undefined,
      });
      res.writeHead(init.status, init.statusText, init.headers);
      res.end(text);
    } catch (err) {
      options.onError?.(err);
      if (!res.headersSent) sendJson(res, 500, { errors: [{ message: "internal error" }] });
      else res.destroy();
    }
  };
}

/** What a readiness check reports. */
export interface ReadyResult {
  readonly ready: boolean;
  /** Why not ready; shown in the 503 body. */
  readonly reason?: string;
}

/** Options of {@link startHttpServer}. */
export interface HttpServerOptions {
  /** Interface to listen on. (Default: "127.0.0.1") */
  host?: string;
  /** Port; 0 picks a free one (see {@link StartedHttpServer.port}). (Default: 4000) */
  port?: number;
  /**
   * Handlers by exact path (`"/graphql"`), any method; the handler answers 405 itself if it must.
   * They take precedence over the built-in `/health` and `/ready`. (Default: none)
   */
  routes?: Readonly<Record<string, RouteHandler>>;
  /** Shortcut for `routes["/graphql"]`, e.g. from {@link createGraphqlHandler}. (Default: none) */
  graphql?: RouteHandler;
  /**
   * The readiness check behind `GET /ready` (e.g. the database answers, migrations applied):
   * 200 `{"status":"ready"}` when it resolves to nothing, `true` or `{ ready: true }`; 503
   * `{"status":"unavailable","reason"}` when it resolves to `false` or `{ ready: false, reason }`,
   * or throws (the reason is the error's message). (Default: always ready)
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a check that only throws when not ready is an `async () => void`
  ready?: () => Promise<ReadyResult | boolean | undefined | void> | ReadyResult | boolean | undefined | void;
  /** Receives errors thrown by route handlers, for logging. (Default: none) */
  onError?: (err: unknown) => void;
}

/** A listening server from {@link startHttpServer}. */
export interface StartedHttpServer {
  readonly server: Server;
  readonly host: string;
  /** The real port (useful when 0 was asked for). */
  readonly port: number;
  /** `http://host:port`, IPv6 hosts in brackets. */
  readonly url: string;
  /** Stops listening and closes every connection, keep-alive ones included. */
  close(): Promise<void>;
}

async function readiness(check: HttpServerOptions["ready"]): Promise<ReadyResult> {
  if (check === undefined) return { ready: true };
  try {
    const result = await check();
    if (result === undefined || result === true) return { ready: true };
    if (result === false) return { ready: false };
    return result;
  } catch (err) {
    return { ready: false, reason: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Starts the small HTTP server of `fraiseql serve`: the given `routes` (e.g. `/graphql`), plus
 * `GET /health` (200 `{"status":"ok"}` while the process runs) and `GET /ready` (the `ready`
 * check); 404 `{"error":"not found"}` for anything else.
 * @throws FraiseqlError FQL_CONFIG_INVALID (key `server.port`) when the address cannot be bound.
 */
export function startHttpServer(options: HttpServerOptions = {}): Promise<StartedHttpServer> {
  const host = options.host ?? "127.0.0.1";
  const builtIn: Record<string, RouteHandler> = {
    "/health": (req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD")
        return sendJson(res, 405, { error: "method not allowed" }, { allow: "GET, HEAD" });
      sendJson(res, 200, { status: "ok" });
    },
    "/ready": async (req, res) => {
      if (req.method !== "GET" && req.method !== "HEAD")
        return sendJson(res, 405, { error: "method not allowed" }, { allow: "GET, HEAD" });
      const result = await readiness(options.ready);
      if (result.ready) sendJson(res, 200, { status: "ready" });
      else sendJson(res, 503, { status: "unavailable", reason: result.reason ?? "not ready" });
    },
  };
  const routes = new Map(
    Object.entries({
      ...builtIn,
      ...(options.graphql === undefined ? {} : { "/graphql": options.graphql }),
      ...options.routes,
    }),
  );

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const route = routes.get(path);
    if (route === undefined) {
      sendJson(res, 404, { error: "not found" });
      return;
    }
    Promise.resolve()
      .then(() => route(req, res))
      .catch((err: unknown) => {
        options.onError?.(err);
        if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
        else res.destroy();
      });
  });

  return new Promise((resolve, reject) => {
    const onListenError = (err: NodeJS.ErrnoException) => {
      reject(
        new FraiseqlError(
          "FQL_CONFIG_INVALID",
          `cannot listen on ${host}:${options.port ?? 4000}: ${err.code ?? err.message}`,
          {
            key: "server.port",
            cause: err,
          },
        ),
      );
    };
    server.once("error", onListenError);
    server.listen(options.port ?? 4000, host, () => {
      server.off("error", onListenError);
      const { port } = server.address() as AddressInfo;
      const urlHost = host.includes(":") ? `[${host}]` : host;
      resolve({
        server,
        host,
        port,
        url: `http://${urlHost}:${port}`,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}
