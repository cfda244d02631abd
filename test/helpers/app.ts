import { after, before } from "node:test";
import { type Service, startService } from "../../src/cli/serve.js";
import { parseConfig } from "../../src/config/load.js";
import type { ResolvedConfig } from "../../src/config/types.js";
import type { Database, Queryable } from "../../src/db/driver.js";
import type { HttpSender } from "../../src/delivery/http.js";
import { MockWebhookServer, type MockWebhookServerOptions } from "../../src/testing/index.js";
import { openTestDatabase, type TestDatabase } from "./db.js";

/**
 * The start of a pipeline test's configuration: an `Order` entity (`id`, `total`) and the
 * observer `on_order_created`, whose one action POSTs each new order to `${RECEIVER}/orders`.
 * Suites append the action's other keys (a `body`) and their own tables.
 */
export const ORDER_TOML = `[[entities]]
name = "Order"
[entities.fields]
id = "ID"
total = "Float"

[[observers]]
name = "on_order_created"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "\${RECEIVER}/orders"
`;

/** Resolves a TOML text the way `fraiseql` does at startup, with the given environment. */
export function configFrom(toml: string, env: Record<string, string> = {}): ResolvedConfig {
  return parseConfig(toml, { file: "test.toml", env: { ...env } });
}

/**
 * Starts the whole service (migrations, dispatcher, GraphQL on a free port) on an existing test
 * database. Fast polling keeps tests quick; the internal schema is unique per call unless given,
 * so several services can share one database in a file.
 */
export async function startTestService(
  db: Database,
  toml: string,
  env: Record<string, string> = {},
  options: { http?: boolean; dispatch?: boolean; sender?: HttpSender } = {},
): Promise<Service> {
  const config = configFrom(toml, env);
  return startService(config, { db, port: 0, logger: false, ...options });
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Polls `sql`, a `SELECT count(*)::int AS n ...`, until it counts `n` or `timeoutMs` passes. */
export async function eventuallyCount(
  db: Queryable,
  sql: string,
  n: number,
  timeoutMs = 10_000,
  what = `${n} rows`,
): Promise<void> {
  await eventually(async () => (await db.query<{ n: number }>(sql)).rows[0]?.n === n, timeoutMs, what);
}

/** Sends a GraphQL request and returns the parsed response. */
// biome-ignore lint/suspicious/noExplicitAny: tests read response fields by name (`res.data.createOrder.id`).
export async function gql(url: string, query: string, variables?: Record<string, unknown>): Promise<any> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return res.json();
}

/** The database, receiver and running service of one pipeline test suite. */
export interface PipelineFixture {
  readonly db: TestDatabase;
  readonly mock: MockWebhookServer;
  readonly service: Service;
}

/**
 * Registers before/after hooks in the current `describe` that open a fresh test database, start
 * a MockWebhookServer, and start the service from `toml` with `RECEIVER` set to the receiver's
 * URL (plus `env`); all closed after the suite. The returned object is filled in by `before`.
 */
export function usePipeline(
  toml: string,
  options: { env?: Record<string, string>; receiver?: MockWebhookServerOptions } = {},
): PipelineFixture {
  const fixture = {} as { db: TestDatabase; mock: MockWebhookServer; service: Service };
  before(async () => {
    fixture.db = await openTestDatabase();
    fixture.mock = await MockWebhookServer.start(options.receiver);
    fixture.service = await startTestService(fixture.db, toml, {
      RECEIVER: fixture.mock.url,
      ...options.env,
    });
  });
  after(async () => {
    await fixture.service?.close();
    await fixture.mock?.close();
    await fixture.db?.close();
  });
  return fixture;
}
