import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { EntityModel } from "../../src/config/types.js";
import { ensureEntityTables, introspectColumns, introspectTable } from "../../src/entities/index.js";
import { isFraiseqlError } from "../../src/errors.js";
import {
  buildSchema,
  createGraphqlHandler,
  type GraphqlOptions,
  type StartedHttpServer,
  startHttpServer,
} from "../../src/graphql/index.js";
import { openTestDatabase, type TestDatabase } from "../helpers/db.js";
import { gql } from "./client.js";

function entity(
  name: string,
  table: string,
  fields: [string, EntityModel["fields"][number]["type"], boolean?][],
  schema = "public",
) {
  return {
    name,
    table,
    schema,
    fields: fields.map(([fieldName, type, nullable]) => ({
      name: fieldName,
      type,
      nullable: nullable ?? false,
    })),
  } satisfies EntityModel;
}

const order = entity("Order", "orders", [
  ["id", "ID"],
  ["customer_email", "String"],
  ["total", "Float"],
  ["status", "String"],
  ["tracking_number", "String", true],
]);

describe("entity tables", () => {
  let db: TestDatabase;
  const servers: StartedHttpServer[] = [];

  async function serve(entities: EntityModel[], options: Omit<GraphqlOptions, "db"> = {}): Promise<string> {
    const schema = buildSchema(entities, { db, ...options });
    const srv = await startHttpServer({ port: 0, routes: { "/graphql": createGraphqlHandler(schema) } });
    servers.push(srv);
    return `${srv.url}/graphql`;
  }

  before(async () => {
    db = await openTestDatabase();
  });

  after(async () => {
    for (const srv of servers) await srv.close();
    await db?.close();
  });

  it("creates a missing table with the documented column types, then is idempotent", async () => {
    const all = entity(
      "Sample",
      "samples",
      [
        ["id", "ID"],
        ["s", "String"],
        ["i", "Int"],
        ["f", "Float"],
        ["b", "Boolean"],
        ["d", "DateTime"],
        ["j", "JSON"],
        ["maybe", "String", true],
      ],
      "made_here",
    );
    const first = await db.transaction((tx) => ensureEntityTables(tx, [all]));
    assert.deepEqual(first.created, ["made_here.samples"]);
    assert.deepEqual(Object.fromEntries(await introspectColumns(db, "made_here", "samples")), {
      id: "bigint",
      s: "text",
      i: "integer",
      f: "double precision",
      b: "boolean",
      d: "timestamp with time zone",
      j: "jsonb",
      maybe: "text",
    });
    const table = await introspectTable(db, "made_here", "samples");
    assert.equal(table?.get("s")?.nullable, false);
    assert.equal(table?.get("maybe")?.nullable, true);
    assert.equal(table?.get("id")?.hasDefault, true);

    const second = await db.transaction((tx) => ensureEntityTables(tx, [all]));
    assert.deepEqual(second.created, []);
    assert.deepEqual(
      [...(second.columns.get("Sample")?.keys() ?? [])],
      ["id", "s", "i", "f", "b", "d", "j", "maybe"],
    );
  });

  it("serves an entity that declares no field but id: created with its defaults, no update", async () => {
    const category = entity("Category", "categories", [["id", "ID"]]);
    const created = await db.transaction((tx) => ensureEntityTables(tx, [category]));
    const url = await serve([category], { columns: created.columns });
    const res = await gql(url, "mutation { createCategory { id } }");
    assert.equal(res.errors, undefined, res.text);
    assert.match(String(res.data.createCategory.id), /^\d+$/);
    // The list is `<name>s`, as SPEC names it.
    const listed = await gql(url, "{ categorys { id } }");
    assert.equal(listed.errors, undefined, listed.text);
    assert.equal(listed.data.categorys.length, 1);
    const update = await gql(url, `mutation { updateCategory(id: "1", input: {}) { id } }`);
    assert.match(update.errors?.[0]?.message ?? "", /Cannot query field "updateCategory"/);
  });

  it("reports no columns for a table that does not exist", async () => {
    assert.equal(await introspectTable(db, "public", "no_such_table"), undefined);
    assert.equal((await introspectColumns(db, "public", "no_such_table")).size, 0);
  });

  it("uses an existing table as it is: uuid id, numeric total, a defaulted status, extra columns", async () => {
    await db.exec(`CREATE TABLE orders (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      customer_email text NOT NULL,
      total numeric(10, 2) NOT NULL,
      status text NOT NULL DEFAULT 'new',
      tracking_number varchar(40),
      internal_notes text
    )`);
    const before = await introspectColumns(db, "public", "orders");
    const { created, columns } = await db.transaction((tx) => ensureEntityTables(tx, [order]));
    assert.deepEqual(created, []);
    assert.deepEqual(await introspectColumns(db, "public", "orders"), before);

    const url = await serve([order], { columns });
    const res = await gql(
      url,
      'mutation { createOrder(input: { customer_email: "u@example.com", total: 99.99 }) { id total status } }',
    );
    assert.equal(res.errors, undefined, res.text);
    const created1 = res.data.createOrder;
    assert.match(created1.id, /^[0-9a-f]{8}-[0-9a-f]{4}-/);
    assert.equal(created1.total, 99.99);
    assert.equal(created1.status, "new");

    const upd = await gql(
      url,
      `mutation ($id: ID!) { updateOrder(id: $id, input: { total: 12.5 }) { total } }`,
      {
        id: created1.id,
      },
    );
    assert.equal(upd.data.updateOrder.total, 12.5);
    const got = await gql(url, "query ($id: ID!) { order(id: $id) { customer_email total } }", {
      id: created1.id,
    });
    assert.deepEqual(got.data.order, { customer_email: "u@example.com", total: 12.5 });

    const tooLong = await gql(
      url,
      `mutation { createOrder(input: { customer_email: "u", total: 1, tracking_number: "${"x".repeat(41)}" }) { id } }`,
    );
    assert.equal(tooLong.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    assert.match(tooLong.errors?.[0]?.message ?? "", /too long/);
  });

  it("without the columns, a field is required as declared", async () => {
    const url = await serve([order]);
    const res = await gql(
      url,
      'mutation { createOrder(input: { customer_email: "u@example.com", total: 1 }) { id } }',
    );
    assert.match(res.errors?.[0]?.message ?? "", /CreateOrderInput\.status/);
  });

  it("asks for the id when an existing table's key has no default", async () => {
    await db.exec(
      "CREATE TABLE skus (id text PRIMARY KEY, label text NOT NULL UNIQUE, price numeric NOT NULL)",
    );
    const sku = entity("Sku", "skus", [
      ["id", "ID"],
      ["label", "String"],
      ["price", "Float"],
    ]);
    const { columns } = await db.transaction((tx) => ensureEntityTables(tx, [sku]));
    const url = await serve([sku], { columns });
    const withoutId = await gql(url, 'mutation { createSku(input: { label: "a", price: 1 }) { id } }');
    assert.match(withoutId.errors?.[0]?.message ?? "", /CreateSkuInput\.id/);

    const res = await gql(
      url,
      'mutation { createSku(input: { id: "SKU-1", label: "a", price: 0.1 }) { id label price } }',
    );
    assert.deepEqual(res.data.createSku, { id: "SKU-1", label: "a", price: 0.1 });

    const dup = await gql(url, 'mutation { createSku(input: { id: "SKU-2", label: "a", price: 2 }) { id } }');
    assert.equal(dup.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    assert.match(dup.errors?.[0]?.message ?? "", /already exists.*label/);
    assert.doesNotMatch(dup.text, /INSERT|RETURNING/);
  });

  it("names an undeclared NOT NULL column that an insert leaves empty", async () => {
    await db.exec(
      "CREATE TABLE tickets (id bigserial PRIMARY KEY, title text NOT NULL, owner text NOT NULL)",
    );
    const ticket = entity("Ticket", "tickets", [
      ["id", "ID"],
      ["title", "String"],
    ]);
    const { columns } = await db.transaction((tx) => ensureEntityTables(tx, [ticket]));
    const url = await serve([ticket], { columns });
    const res = await gql(url, 'mutation { createTicket(input: { title: "t" }) { id } }');
    assert.equal(res.errors?.[0]?.extensions?.code, "FQL_GRAPHQL_INPUT");
    assert.match(res.errors?.[0]?.message ?? "", /column "owner".*required/);
  });

  it("refuses an existing table that lacks a declared field, naming entity, field, table and columns", async () => {
    await db.exec("CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL)");
    const customer = entity("Customer", "customers", [
      ["id", "ID"],
      ["email", "String"],
      ["phone", "String", true],
    ]);
    await assert.rejects(
      db.transaction((tx) => ensureEntityTables(tx, [customer])),
      (err: unknown) => {
        assert.ok(isFraiseqlError(err, "FQL_CONFIG_INVALID"));
        assert.match(err.message, /Customer/);
        assert.match(err.message, /"phone"/);
        assert.match(err.message, /public\.customers/);
        assert.match(err.message, /id, email/);
        assert.equal(err.location.key, "entities.Customer.fields.phone");
        return true;
      },
    );
    assert.equal((await introspectColumns(db, "public", "customers")).has("phone"), false);
  });

  it("rejects entity and field names GraphQL cannot express", () => {
    assert.throws(
      () =>
        buildSchema(
          [
            entity("Bad", "bad", [
              ["id", "ID"],
              ["not-ok", "String"],
            ]),
          ],
          { db },
        ),
      (err: unknown) => isFraiseqlError(err, "FQL_CONFIG_INVALID") && /not-ok/.test(err.message),
    );
    assert.throws(
      () => buildSchema([entity("Order", "a", [["id", "ID"]]), entity("order", "b", [["id", "ID"]])], { db }),
      (err: unknown) => isFraiseqlError(err, "FQL_CONFIG_INVALID") && /"order"/.test(err.message),
    );
  });
});
