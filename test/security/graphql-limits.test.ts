import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { getIntrospectionQuery } from "graphql";
import { parseConfig } from "../../src/config/load.js";
import type { EntityModel } from "../../src/config/types.js";
import { ensureEntityTables } from "../../src/entities/index.js";
import { FraiseqlError } from "../../src/errors.js";
import {
  buildSchema,
  createGraphqlHandler,
  type GraphqlHandlerOptions,
  type StartedHttpServer,
  startHttpServer,
} from "../../src/graphql/index.js";
import { gql } from "../graphql/client.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";

const order: EntityModel = {
  name: "Order",
  table: "orders",
  schema: "public",
  fields: [
    { name: "id", type: "ID", nullable: false },
    { name: "customer_email", type: "String", nullable: false },
    { name: "total", type: "Float", nullable: false },
    { name: "status", type: "String", nullable: false },
  ],
};
const doomed: EntityModel = {
  name: "Doomed",
  table: "doomed_rows",
  schema: "public",
  fields: [
    { name: "id", type: "ID", nullable: false },
    { name: "note", type: "String", nullable: true },
  ],
};

/** SQL text, internal names or stack frames must never reach a client. */
function assertNothingInternal(text: string): void {
  assert.doesNotMatch(
    text,
    /INSERT\s|UPDATE\s|SELECT\s|RETURNING|FROM\s|txid_current|doomed_rows|"public"\.|\bat\s.+:\d+:\d+|node_modules|\.ts:\d+/,
  );
}

describe("GraphQL limits: depth, complexity, introspection, body size", () => {
  let db: TestDatabase;
  const servers: StartedHttpServer[] = [];
  const errors: unknown[] = [];

  async function serve(options: GraphqlHandlerOptions): Promise<string> {
    const schema = buildSchema([order, doomed], { db, onError: (err) => errors.push(err) });
    const server = await startHttpServer({
      port: 0,
      routes: {
        "/graphql": createGraphqlHandler(schema, { ...options, onError: (err) => errors.push(err) }),
      },
    });
    servers.push(server);
    return `${server.url}/graphql`;
  }

  before(async () => {
    db = await openTestDatabase();
    await db.transaction((tx) => ensureEntityTables(tx, [order, doomed]));
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await db?.close();
  });

  it("refuses an operation deeper than max_depth before anything runs, fragments included", async () => {
    const url = await serve({ maxDepth: 1 });
    const before = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM orders");
    const mutation = await gql(
      url,
      'mutation { createOrder(input: { customer_email: "d@example.com", total: 1, status: "new" }) { id } }',
    );
    assert.equal(mutation.data, undefined);
    assert.match(mutation.errors?.[0]?.message ?? "", /nested 2 fields deep; the limit is 1/);
    assert.equal(mutation.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    const after = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM orders");
    assert.equal(after.rows[0]?.n, before.rows[0]?.n, "nothing was written");

    const viaFragment = await gql(url, "query { ...F } fragment F on Query { orders { id } }");
    assert.match(viaFragment.errors?.[0]?.message ?? "", /nested 2 fields deep/);
    assert.equal((await gql(url, "{ __typename }")).errors, undefined);
  });

  it("refuses an operation over max_complexity: list fields count once per row they may return", async () => {
    const url = await serve({ maxComplexity: 500 });
    // 1 + 100 (default limit) * 2 fields = 201
    assert.equal((await gql(url, "{ orders { id total } }")).errors, undefined);
    const big = await gql(url, "{ orders(limit: 300) { id total } }");
    assert.match(big.errors?.[0]?.message ?? "", /complexity is 601; the limit is 500/);
    assert.equal(big.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    // Aliases add up.
    const aliases = await gql(
      url,
      "{ a: orders { id total } b: orders { id total } c: orders { id total } }",
    );
    assert.match(aliases.errors?.[0]?.message ?? "", /complexity is 603/);
    // A limit given as a variable is costed with its value.
    const q = "query ($n: Int) { orders(limit: $n) { id total } }";
    assert.match((await gql(url, q, { n: 1000 })).errors?.[0]?.message ?? "", /complexity is 2001/);
    assert.equal((await gql(url, q, { n: 10 })).errors, undefined);
    const byDefault = await gql(url, "query ($n: Int = 1000) { orders(limit: $n) { id total } }");
    assert.match(byDefault.errors?.[0]?.message ?? "", /complexity is 2001/, "a variable's default counts");
    // Beyond the largest page the server serves, a limit costs no more than that page.
    const capped = await gql(url, "{ orders(limit: 1000000) { id } }");
    assert.match(capped.errors?.[0]?.message ?? "", /complexity is 1001;/);
  });

  it("the default limits accept a full page and the standard introspection query, and refuse alias floods", async () => {
    const url = await serve({});
    assert.equal(
      (await gql(url, "{ orders(limit: 1000) { id customer_email total status } }")).errors,
      undefined,
    );
    const introspection = await gql(url, getIntrospectionQuery());
    assert.equal(introspection.errors, undefined, introspection.text.slice(0, 300));
    assert.ok(introspection.data.__schema.types.some((t: { name: string }) => t.name === "Order"));
    const flood = Array.from({ length: 20 }, (_, i) => `a${i}: orders(limit: 1000) { id total status }`).join(
      " ",
    );
    const refused = await gql(url, `{ ${flood} }`);
    assert.match(refused.errors?.[0]?.message ?? "", /complexity is 60020; the limit is 50000/);
  });

  it("with introspection off, __schema and __type are refused and __typename still works", async () => {
    const url = await serve({ introspection: false });
    for (const query of [
      "{ __schema { types { name } } }",
      '{ __type(name: "Order") { name } }',
      getIntrospectionQuery(),
    ]) {
      const res = await gql(url, query);
      assert.equal(res.data, undefined);
      assert.match(res.errors?.[0]?.message ?? "", /^introspection is disabled on this server$/);
      assertNothingInternal(res.text);
    }
    const typename = await gql(url, "{ __typename orders(limit: 1) { __typename id } }");
    assert.equal(typename.errors, undefined);
  });

  it("answers 413 to a body over max_body_size", async () => {
    const url = await serve({ maxBodyBytes: 2_000 });
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: `{ orders { id } } # ${"x".repeat(2_000)}` }),
    });
    assert.equal(res.status, 413);
    const body = (await res.json()) as { errors: { message: string }[] };
    assert.equal(body.errors[0]?.message, "request body exceeds 2000 bytes");
    assert.equal((await gql(url, "{ orders(limit: 1) { id } }")).errors, undefined);
  });

  it("errors never carry SQL text, internal names or stacks", async () => {
    const url = await serve({});
    const created = await gql(url, 'mutation { createDoomed(input: { note: "x" }) { id } }');
    assert.equal(created.errors, undefined, created.text);
    const responses = [
      await gql(url, "{ orders(limit: -1) { id } }"),
      await gql(url, "{ orders { nope } }"),
      await gql(url, "{ orders { id "),
      await gql(
        url,
        'mutation { createOrder(input: { customer_email: "x", total: "many", status: "s" }) { id } }',
      ),
    ];
    await db.query("DROP TABLE doomed_rows");
    const internal = await gql(url, "{ doomeds { id note } }");
    assert.equal(internal.errors?.[0]?.message, "internal error");
    assert.equal(internal.errors?.[0]?.extensions?.code, "FQL_DB_QUERY");
    responses.push(internal, await gql(url, 'mutation { createDoomed(input: { note: "y" }) { id } }'));
    for (const res of responses) {
      assert.ok(res.errors && res.errors.length > 0, res.text);
      assertNothingInternal(res.text);
      assert.doesNotMatch(res.text, /"stack"|"locations":\s*\[\s*\{[^}]*"file"/);
    }
    assert.ok(errors.length >= 2, "the causes went to the server's log instead");
  });
});

describe("GraphQL limits in the config", () => {
  it("defaults: 1 MiB body, depth 10, complexity 50000, introspection on a loopback host", () => {
    const config = parseConfig("", { env: {} });
    assert.deepEqual(config.graphql, {
      maxBodySize: 1024 * 1024,
      maxDepth: 10,
      maxComplexity: 50_000,
      introspection: true,
    });
  });

  it("introspection defaults to off on a non-loopback host, and can be set either way", () => {
    const exposed = '[server]\nhost = "0.0.0.0"\n[server.auth]\nmode = "bearer"\ntokens = ["t0ken-value"]\n';
    assert.equal(parseConfig(exposed, { env: {} }).graphql.introspection, false);
    assert.equal(
      parseConfig(exposed.replace("[server.auth]", "introspection = true\n[server.auth]"), { env: {} })
        .graphql.introspection,
      true,
    );
    assert.equal(parseConfig("[server]\nintrospection = false\n", { env: {} }).graphql.introspection, false);
  });

  it("reads max_body_size, max_depth and max_complexity, and refuses nonsense", () => {
    const config = parseConfig('[server]\nmax_body_size = "64KiB"\nmax_depth = 4\nmax_complexity = 900\n', {
      env: {},
    });
    assert.deepEqual(
      [config.graphql.maxBodySize, config.graphql.maxDepth, config.graphql.maxComplexity],
      [65_536, 4, 900],
    );
    assert.throws(
      () => parseConfig("[server]\nmax_depth = 0\n", { env: {} }),
      /server\.max_depth|must be >= 1/,
    );
    assert.throws(() => parseConfig("[server]\nmax_body_size = 1000\n", { env: {} }), /size with a unit/);
  });

  it("serving on a public interface without authentication is refused, saying how to proceed", () => {
    assert.throws(
      () => parseConfig('[server]\nhost = "0.0.0.0"\n', { env: {} }),
      (err: unknown) => {
        assert.ok(err instanceof FraiseqlError);
        assert.equal(err.location.key, "server.host");
        const text = err.describe();
        assert.match(text, /not a loopback address/);
        assert.match(text, /mode = "bearer"/);
        assert.match(text, /tokens = \["\$\{API_TOKEN\}"\]/);
        assert.match(text, /jwt/);
        return true;
      },
    );
  });
});
