import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { EntityModel } from "../../src/config/types.js";
import { ensureEntityTables } from "../../src/entities/index.js";
import {
  buildSchema,
  createGraphqlHandler,
  type MutationChange,
  type StartedHttpServer,
  startHttpServer,
} from "../../src/graphql/index.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";
import { gql } from "./client.js";

const order: EntityModel = {
  name: "Order",
  table: "orders",
  schema: "public",
  fields: [
    { name: "id", type: "ID", nullable: false },
    { name: "customer_email", type: "String", nullable: false },
    { name: "total", type: "Float", nullable: false },
    { name: "status", type: "String", nullable: false },
    { name: "tracking_number", type: "String", nullable: true },
  ],
};

const event: EntityModel = {
  name: "AuditEvent",
  table: "audit_events",
  schema: "audit",
  fields: [
    { name: "id", type: "ID", nullable: false },
    { name: "happened_at", type: "DateTime", nullable: false },
    { name: "payload", type: "JSON", nullable: false },
    { name: "count", type: "Int", nullable: false },
    { name: "urgent", type: "Boolean", nullable: false },
    { name: "note", type: "String", nullable: true },
  ],
};

const ORDER_FIELDS = "id customer_email total status tracking_number";
const NEW_ORDER = { customer_email: "a@example.com", total: 99.99, status: "pending" };
const CREATE = `mutation ($input: CreateOrderInput!) { createOrder(input: $input) { ${ORDER_FIELDS} } }`;

function assertNoSql(text: string): void {
  assert.doesNotMatch(
    text,
    /INSERT|UPDATE\s|SELECT|RETURNING|txid_current|"public"\."orders"|\bat\s.+:\d+:\d+/,
  );
}

describe("GraphQL API over HTTP", () => {
  let db: TestDatabase;
  let server: StartedHttpServer;
  let url: string;
  const changes: MutationChange[] = [];
  let failAfterMutation = false;
  let ready: { ready: boolean; reason?: string } = { ready: true };

  before(async () => {
    db = await openTestDatabase();
    await db.transaction((tx) => ensureEntityTables(tx, [order, event]));
    const schema = buildSchema([order, event], {
      db,
      afterMutation: (change) => {
        changes.push(change);
        if (failAfterMutation) throw new Error("receiver unreachable");
        return { deliveries: [{ entity: change.entity, op: change.op, id: change.id }] };
      },
    });
    server = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      routes: { "/graphql": createGraphqlHandler(schema) },
      ready: () => ready,
    });
    url = `${server.url}/graphql`;
  });

  after(async () => {
    await server?.close();
    await db?.close();
  });

  it("listens on the real port when asked for port 0", () => {
    assert.ok(server.port > 0);
    assert.equal(server.url, `http://127.0.0.1:${server.port}`);
  });

  it("creates an order and returns it, total as the number 99.99", async () => {
    const res = await gql(url, CREATE, { input: NEW_ORDER });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.errors, undefined, res.text);
    const created = res.data.createOrder;
    assert.equal(typeof created.id, "string");
    assert.match(created.id, /^\d+$/);
    assert.deepEqual({ ...created, id: undefined }, { id: undefined, ...NEW_ORDER, tracking_number: null });
    assert.equal(typeof created.total, "number");

    const stored = await db.query<{ total: number }>("SELECT total FROM orders WHERE id = $1", [created.id]);
    assert.equal(Number(stored.rows[0]?.total), 99.99);
  });

  it("gets one order by id and lists orders with limit and offset, ordered by id", async () => {
    const ids: string[] = [];
    for (const email of ["l1@example.com", "l2@example.com", "l3@example.com"]) {
      const res = await gql(url, CREATE, { input: { ...NEW_ORDER, customer_email: email } });
      ids.push(res.data.createOrder.id);
    }
    const one = await gql(url, `query ($id: ID!) { order(id: $id) { ${ORDER_FIELDS} } }`, { id: ids[1] });
    assert.equal(one.data.order.customer_email, "l2@example.com");
    assert.equal(one.data.order.total, 99.99);

    const all = await gql(url, "{ orders { id } }");
    const allIds = all.data.orders.map((o: { id: string }) => o.id);
    assert.deepEqual(
      allIds,
      [...allIds].sort((a: string, b: string) => Number(a) - Number(b)),
    );
    for (const id of ids) assert.ok(allIds.includes(id));

    const page = await gql(url, "query ($o: Int) { orders(limit: 2, offset: $o) { id } }", {
      o: allIds.length - 3,
    });
    assert.deepEqual(
      page.data.orders.map((o: { id: string }) => o.id),
      ids.slice(0, 2),
    );

    const missing = await gql(url, '{ order(id: "999999") { id } }');
    assert.equal(missing.data.order, null);
    assert.equal(missing.errors, undefined);
  });

  it("rejects a negative limit with a clean error", async () => {
    const res = await gql(url, "{ orders(limit: -1) { id } }");
    assert.match(res.errors?.[0]?.message ?? "", /limit must not be negative/);
    assert.equal(res.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
  });

  it("updates only the given fields; null for an unknown id", async () => {
    const created = (await gql(url, CREATE, { input: NEW_ORDER })).data.createOrder;
    const res = await gql(
      url,
      `mutation ($id: ID!) { updateOrder(id: $id, input: { status: "shipped", tracking_number: "TRK1" }) { ${ORDER_FIELDS} } }`,
      { id: created.id },
    );
    assert.deepEqual(res.data.updateOrder, { ...created, status: "shipped", tracking_number: "TRK1" });

    const cleared = await gql(
      url,
      `mutation ($id: ID!) { updateOrder(id: $id, input: { tracking_number: null }) { tracking_number } }`,
      {
        id: created.id,
      },
    );
    assert.equal(cleared.data.updateOrder.tracking_number, null);

    const none = await gql(url, 'mutation { updateOrder(id: "987654", input: { status: "x" }) { id } }');
    assert.equal(none.errors, undefined, none.text);
    assert.equal(none.data.updateOrder, null);
  });

  it("returns the row unchanged for an empty update input, without calling afterMutation", async () => {
    const created = (await gql(url, CREATE, { input: NEW_ORDER })).data.createOrder;
    changes.length = 0;
    const res = await gql(
      url,
      `mutation ($id: ID!) { updateOrder(id: $id, input: {}) { ${ORDER_FIELDS} } }`,
      {
        id: created.id,
      },
    );
    assert.deepEqual(res.data.updateOrder, created);
    assert.equal(changes.length, 0);
  });

  it("deletes an order and returns the deleted row; null the second time", async () => {
    const created = (await gql(url, CREATE, { input: NEW_ORDER })).data.createOrder;
    const del = `mutation ($id: ID!) { deleteOrder(id: $id) { ${ORDER_FIELDS} } }`;
    const first = await gql(url, del, { id: created.id });
    assert.deepEqual(first.data.deleteOrder, created);
    const again = await gql(url, del, { id: created.id });
    assert.equal(again.data.deleteOrder, null);
    const get = await gql(url, "query ($id: ID!) { order(id: $id) { id } }", { id: created.id });
    assert.equal(get.data.order, null);
  });

  it("reports a missing required field by name, without SQL", async () => {
    const viaVariables = await gql(url, CREATE, { input: { customer_email: "x@example.com", total: 1 } });
    assert.equal(viaVariables.data, undefined);
    assert.match(viaVariables.errors?.[0]?.message ?? "", /status/);
    assert.equal(viaVariables.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    assertNoSql(viaVariables.text);

    const inline = await gql(
      url,
      'mutation { createOrder(input: { customer_email: "x", total: 1 }) { id } }',
    );
    assert.match(inline.errors?.[0]?.message ?? "", /status/);
    assertNoSql(inline.text);
  });

  it("refuses to null a required field on update, naming it", async () => {
    const created = (await gql(url, CREATE, { input: NEW_ORDER })).data.createOrder;
    const res = await gql(
      url,
      "mutation ($id: ID!) { updateOrder(id: $id, input: { status: null }) { id } }",
      {
        id: created.id,
      },
    );
    assert.equal(res.errors?.[0]?.message, 'field "status" cannot be null');
    assert.equal(res.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    const row = await db.query<{ status: string }>("SELECT status FROM orders WHERE id = $1", [created.id]);
    assert.equal(row.rows[0]?.status, "pending");
  });

  it("maps a malformed id to a clean input error", async () => {
    const res = await gql(url, '{ order(id: "not-a-number") { id } }');
    assert.equal(res.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    assert.match(res.errors?.[0]?.message ?? "", /invalid value.*bigint/);
    assertNoSql(res.text);
  });

  it("calls afterMutation with entity, op, id and the writing transaction's txid", async () => {
    changes.length = 0;
    const res = await gql(url, CREATE, { input: NEW_ORDER });
    const id = res.data.createOrder.id;
    assert.equal(changes.length, 1);
    const change = changes[0]!;
    assert.equal(change.entity, "Order");
    assert.equal(change.op, "INSERT");
    assert.equal(change.id, id);
    assert.match(change.txid, /^\d+$/);
    const xmin = await db.query<{ xmin: string }>("SELECT xmin::text AS xmin FROM orders WHERE id = $1", [
      id,
    ]);
    assert.equal(BigInt(change.txid) % 2n ** 32n, BigInt(xmin.rows[0]!.xmin));

    await gql(url, 'mutation ($id: ID!) { updateOrder(id: $id, input: { status: "paid" }) { id } }', { id });
    await gql(url, "mutation ($id: ID!) { deleteOrder(id: $id) { id } }", { id });
    assert.deepEqual(
      changes.map((c) => [c.op, c.id]),
      [
        ["INSERT", id],
        ["UPDATE", id],
        ["DELETE", id],
      ],
    );
    assert.equal(new Set(changes.map((c) => c.txid)).size, 3);
  });

  it("does not call afterMutation when nothing was written", async () => {
    changes.length = 0;
    await gql(url, 'mutation { deleteOrder(id: "424242") { id } }');
    await gql(url, 'mutation { updateOrder(id: "424242", input: { status: "x" }) { id } }');
    await gql(url, "{ orders { id } }");
    assert.equal(changes.length, 0);
  });

  it("puts afterMutation results into extensions.webhooks, merging the mutations of one request", async () => {
    const one = await gql(url, CREATE, { input: NEW_ORDER });
    const id = one.data.createOrder.id;
    assert.deepEqual(one.extensions?.webhooks, { deliveries: [{ entity: "Order", op: "INSERT", id }] });

    const two = await gql(
      url,
      `mutation ($a: CreateOrderInput!) { first: createOrder(input: $a) { id } second: createOrder(input: $a) { id } }`,
      { a: NEW_ORDER },
    );
    assert.deepEqual(two.extensions?.webhooks, {
      deliveries: [
        { entity: "Order", op: "INSERT", id: two.data.first.id },
        { entity: "Order", op: "INSERT", id: two.data.second.id },
      ],
    });

    const query = await gql(url, "{ orders(limit: 1) { id } }");
    assert.equal(query.extensions, undefined);
  });

  it("keeps the write when afterMutation throws, and reports the failure in extensions", async () => {
    failAfterMutation = true;
    try {
      const res = await gql(url, CREATE, { input: { ...NEW_ORDER, customer_email: "kept@example.com" } });
      assert.equal(res.errors, undefined, res.text);
      const id = res.data.createOrder.id;
      assert.deepEqual(res.extensions?.webhooks, {
        errors: [{ entity: "Order", op: "INSERT", id, message: "receiver unreachable" }],
      });
      const row = await db.query("SELECT 1 FROM orders WHERE id = $1", [id]);
      assert.equal(row.rows.length, 1);
    } finally {
      failAfterMutation = false;
    }
  });

  it("round-trips DateTime, JSON, Int and Boolean in a non-public schema", async () => {
    const input = {
      happened_at: "2024-05-01T12:34:56.789+02:00",
      payload: { items: [1, "two", { three: true }], empty: null },
      count: 7,
      urgent: true,
    };
    const res = await gql(
      url,
      "mutation ($input: CreateAuditEventInput!) { createAuditEvent(input: $input) { id happened_at payload count urgent note } }",
      { input },
    );
    assert.equal(res.errors, undefined, res.text);
    assert.deepEqual(
      { ...res.data.createAuditEvent, id: undefined },
      { id: undefined, ...input, happened_at: "2024-05-01T10:34:56.789Z", note: null },
    );

    const arrayPayload = await gql(
      url,
      'mutation { createAuditEvent(input: { happened_at: "2024-01-01", payload: [1, 2], count: 0, urgent: false }) { payload urgent } }',
    );
    assert.deepEqual(arrayPayload.data.createAuditEvent, { payload: [1, 2], urgent: false });

    const bad = await gql(
      url,
      'mutation { createAuditEvent(input: { happened_at: "yesterday", payload: 1, count: 0, urgent: false }) { id } }',
    );
    assert.match(bad.errors?.[0]?.message ?? "", /ISO 8601/);
    assert.equal(bad.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
  });

  it("answers GET queries and refuses GET mutations", async () => {
    const get = await fetch(`${url}?query=${encodeURIComponent("{ orders(limit: 1) { id } }")}`, {
      headers: { accept: "application/json" },
    });
    assert.equal(get.status, 200);
    const body = (await get.json()) as { data: { orders: unknown[] } };
    assert.equal(body.data.orders.length, 1);

    const mutation = await fetch(
      `${url}?query=${encodeURIComponent('mutation { deleteOrder(id: "1") { id } }')}`,
    );
    assert.equal(mutation.status, 405);
  });

  it("answers 413 to a body over 1 MiB and writes nothing", async () => {
    const before = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM orders");
    const huge = "x".repeat(1024 * 1024 + 10);
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: CREATE, variables: { input: { ...NEW_ORDER, status: huge } } }),
    });
    assert.equal(res.status, 413);
    await res.text();
    const afterCount = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM orders");
    assert.equal(afterCount.rows[0]?.n, before.rows[0]?.n);
  });

  it("serves /health, /ready and 404", async () => {
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });

    const readyRes = await fetch(`${server.url}/ready`);
    assert.equal(readyRes.status, 200);
    assert.deepEqual(await readyRes.json(), { status: "ready" });

    ready = { ready: false, reason: "migrations pending" };
    try {
      const notReady = await fetch(`${server.url}/ready`);
      assert.equal(notReady.status, 503);
      assert.deepEqual(await notReady.json(), { status: "unavailable", reason: "migrations pending" });
    } finally {
      ready = { ready: true };
    }

    const missing = await fetch(`${server.url}/nope`);
    assert.equal(missing.status, 404);
    await missing.text();
  });
});

describe("startHttpServer", () => {
  it("reports a throwing readiness check as 503 with its message", async () => {
    const srv = await startHttpServer({
      port: 0,
      ready: async () => {
        throw new Error("database unreachable");
      },
    });
    try {
      const res = await fetch(`${srv.url}/ready`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "unavailable", reason: "database unreachable" });
    } finally {
      await srv.close();
    }
  });

  it("treats a check that resolves to nothing as ready, and false as not ready", async () => {
    let up = true;
    const srv = await startHttpServer({
      port: 0,
      ready: async () => {
        if (!up) return false;
      },
    });
    try {
      assert.equal((await fetch(`${srv.url}/ready`)).status, 200);
      up = false;
      const res = await fetch(`${srv.url}/ready`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "unavailable", reason: "not ready" });
    } finally {
      await srv.close();
    }
  });

  it("closes promptly with an open keep-alive connection", async () => {
    const srv = await startHttpServer({ port: 0 });
    const res = await fetch(`${srv.url}/health`, { headers: { connection: "keep-alive" } });
    await res.text();
    await srv.close();
    await assert.rejects(fetch(`${srv.url}/health`));
  });

  it("fails with a config error when the port is taken", async () => {
    const first = await startHttpServer({ port: 0 });
    try {
      await assert.rejects(startHttpServer({ port: first.port }), (err: Error & { code?: string }) => {
        assert.equal(err.code, "FQL_CONFIG_INVALID");
        assert.match(err.message, /EADDRINUSE/);
        return true;
      });
    } finally {
      await first.close();
    }
  });
});
