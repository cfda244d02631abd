import {
  GraphQLBoolean,
  GraphQLError,
  type GraphQLFieldConfig,
  type GraphQLFieldConfigMap,
  GraphQLFloat,
  GraphQLID,
  type GraphQLInputFieldConfigMap,
  GraphQLInputObjectType,
  type GraphQLInputType,
  GraphQLInt,
  GraphQLList,
  GraphQLNonNull,
  GraphQLObjectType,
  type GraphQLScalarType,
  GraphQLSchema,
  GraphQLString,
  validateSchema,
} from "graphql";
import type { EntityModel, EventKind, FieldModel, Scalar } from "../config/types.js";
import type { Database } from "../db/driver.js";
import { keyColumn, type TableColumns } from "../entities/ddl.js";
import {
  deleteRow,
  type EntityRow,
  getRow,
  insertRow,
  listRows,
  updateRow,
  type WrittenRow,
} from "../entities/rows.js";
import { FraiseqlError } from "../errors.js";
import { clientError, pgErrorToGraphql } from "./errors.js";
import { GraphQLDateTime, GraphQLJSON } from "./scalars.js";

/** What one committed mutation changed, as given to {@link GraphqlOptions.afterMutation}. */
export interface MutationChange {
  /** Entity name as declared (`Order`). */
  readonly entity: string;
  readonly op: EventKind;
  /** Key of the row, as text. */
  readonly id: string;
  /** `txid_current()` of the transaction that wrote it, as text (the outbox's `txid`). */
  readonly txid: string;
  /**
   * With {@link GraphqlOptions.outboxSequence}: the last outbox event id handed out before the
   * change was captured (its event's id is larger), as text.
   */
  readonly outboxBefore?: string;
}

/** Options of {@link buildSchema}. */
export interface GraphqlOptions {
  /** Where entity rows are read and written; each mutation is one autocommitted statement. */
  db: Database;
  /**
   * Called after each mutation committed, with what changed; its resolved value (if an object)
   * is merged into the response's `extensions` under the key `webhooks` (used for synchronous
   * dispatch). Errors thrown here never undo the committed write: they are reported in
   * `extensions.webhooks.errors`. (Default: none)
   */
  afterMutation?: (change: MutationChange) => Promise<unknown> | unknown;
  /**
   * Columns of each entity's table keyed by entity name, as returned by `ensureEntityTables`.
   * With them, fields that have a database default are optional in create inputs, nullable
   * columns are nullable in output, and an existing table's key without a default becomes a
   * required `id` in the create input. An entity missing from the map, or mapped to undefined,
   * uses its declared fields only. (Default: none: declared nullability only)
   */
  columns?: ReadonlyMap<string, TableColumns | undefined>;
  /** Largest `limit` a list query honours; larger values are capped. (Default: 1000) */
  maxLimit?: number;
  /**
   * The outbox's id sequence (`"fraiseql".events_id_seq`): each write then reads its last value
   * in the same statement, and `afterMutation` gets it as `outboxBefore`. (Default: none)
   */
  outboxSequence?: string;
  /** Receives errors that are not the client's fault (database down, bugs), for logging. (Default: none) */
  onError?: (err: unknown, where: { entity: string; operation: string }) => void;
}

/** Default of `limit` in list queries. */
export const DEFAULT_LIMIT = 100;
/** Default of {@link GraphqlOptions.maxLimit}. */
export const DEFAULT_MAX_LIMIT = 1000;

/**
 * Per-request state shared by the resolvers and the HTTP handler: what `afterMutation` returned
 * for each mutation of the request, merged into `extensions.webhooks`.
 */
export type GraphqlContext = { readonly webhooks: WebhookCollector };

/** Collects `afterMutation` results and failures of one request. */
export class WebhookCollector {
  #merged: Record<string, unknown> | undefined;

  /** Merges one result: keys are overwritten, except arrays under the same key, which are concatenated. */
  add(result: unknown): void {
    if (typeof result !== "object" || result === null || Array.isArray(result)) return;
    this.#merged ??= {};
    const merged = this.#merged;
    for (const [key, value] of Object.entries(result)) {
      const prev = merged[key];
      merged[key] = Array.isArray(prev) && Array.isArray(value) ? [...prev, ...value] : value;
    }
  }

  /** Records a failure of `afterMutation` under `errors`. */
  fail(change: MutationChange, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.add({ errors: [{ entity: change.entity, op: change.op, id: change.id, message }] });
  }

  /** The value for `extensions.webhooks`, or undefined when nothing was collected. */
  get extension(): Record<string, unknown> | undefined {
    return this.#merged;
  }
}

/** A fresh per-request context for executing operations against a schema from {@link buildSchema}. */
export function createGraphqlContext(): GraphqlContext {
  return { webhooks: new WebhookCollector() };
}

/** GraphQL names of one entity's operations and types. */
export interface EntityOperationNames {
  readonly type: string;
  readonly createInput: string;
  readonly updateInput: string;
  readonly create: string;
  readonly update: string;
  readonly delete: string;
  readonly get: string;
  readonly list: string;
}

/** `Order` -> `createOrder`, `updateOrder`, `deleteOrder`, `order`, `orders`, `CreateOrderInput`, `UpdateOrderInput`. */
export function operationNames(entityName: string): EntityOperationNames {
  const lower = entityName.charAt(0).toLowerCase() + entityName.slice(1);
  return {
    type: entityName,
    createInput: `Create${entityName}Input`,
    updateInput: `Update${entityName}Input`,
    create: `create${entityName}`,
    update: `update${entityName}`,
    delete: `delete${entityName}`,
    get: lower,
    list: `${lower}s`,
  };
}

const GRAPHQL_NAME = /^[_A-Za-z][_0-9A-Za-z]*$/;
const RESERVED_TYPES = new Set([
  "Query",
  "Mutation",
  "Subscription",
  "DateTime",
  "JSON",
  "ID",
  "String",
  "Int",
  "Float",
  "Boolean",
]);

const SCALAR_TYPES: Readonly<Record<Scalar, GraphQLScalarType>> = {
  ID: GraphQLID,
  String: GraphQLString,
  Int: GraphQLInt,
  Float: GraphQLFloat,
  Boolean: GraphQLBoolean,
  DateTime: GraphQLDateTime,
  JSON: GraphQLJSON,
};

function invalid(entity: EntityModel, message: string, key = `entities.${entity.name}`): FraiseqlError {
  return new FraiseqlError("FQL_CONFIG_INVALID", message, { key });
}

function checkNames(entities: readonly EntityModel[]): void {
  const taken = new Map<string, string>();
  for (const entity of entities) {
    if (!GRAPHQL_NAME.test(entity.name) || entity.name.startsWith("__")) {
      throw invalid(
        entity,
        `entity name "${entity.name}" is not a valid GraphQL name (letters, digits, _; not starting with a digit or __)`,
      );
    }
    if (RESERVED_TYPES.has(entity.name))
      throw invalid(entity, `entity name "${entity.name}" is reserved by GraphQL`);
    for (const field of entity.fields) {
      if (!GRAPHQL_NAME.test(field.name) || field.name.startsWith("__")) {
        throw invalid(
          entity,
          `field "${field.name}" of entity ${entity.name} is not a valid GraphQL name (letters, digits, _; not starting with a digit or __)`,
          `entities.${entity.name}.fields.${field.name}`,
        );
      }
    }
    const names = operationNames(entity.name);
    for (const name of [
      names.type,
      names.createInput,
      names.updateInput,
      names.create,
      names.update,
      names.delete,
      names.get,
      names.list,
    ]) {
      const other = taken.get(name);
      if (other !== undefined)
        throw invalid(entity, `entities ${other} and ${entity.name} both define the GraphQL name "${name}"`);
      taken.set(name, entity.name);
    }
  }
}

interface EntityPlan {
  readonly entity: EntityModel;
  readonly names: EntityOperationNames;
  readonly key: string;
  readonly columns: TableColumns | undefined;
  /** Declared fields other than the key, minus generated columns: what inputs may set. */
  readonly writable: readonly FieldModel[];
  /** True when create input must carry the key (an existing table's key has no default). */
  readonly keyInCreate: boolean;
  readonly declared: ReadonlySet<string>;
}

function plan(entity: EntityModel, columns: TableColumns | undefined): EntityPlan {
  const key = keyColumn(entity);
  const keyInfo = columns?.get(key);
  return {
    entity,
    names: operationNames(entity.name),
    key,
    columns,
    writable: entity.fields.filter((f) => f.name !== key && columns?.get(f.name)?.generated !== true),
    keyInCreate: keyInfo !== undefined && !keyInfo.hasDefault,
    declared: new Set([key, ...entity.fields.map((f) => f.name)]),
  };
}

function outputType(p: EntityPlan): GraphQLObjectType<EntityRow, GraphqlContext> {
  return new GraphQLObjectType<EntityRow, GraphqlContext>({
    name: p.names.type,
    description: `A row of ${p.entity.schema}.${p.entity.table}.`,
    fields: () => {
      const fields: GraphQLFieldConfigMap<EntityRow, GraphqlContext> = {
        [p.key]: { type: new GraphQLNonNull(GraphQLID) },
      };
      for (const field of p.entity.fields) {
        if (field.name === p.key) continue;
        const columnNullable = p.columns?.get(field.name)?.nullable ?? false;
        const scalar = SCALAR_TYPES[field.type];
        fields[field.name] = { type: field.nullable || columnNullable ? scalar : new GraphQLNonNull(scalar) };
      }
      return fields;
    },
  });
}

/**
 * The input types of `create` and `update`; each undefined when it would have no field (GraphQL
 * has no empty input type): an entity that declares no field but `id` is created with its
 * table's defaults and has no update.
 */
function inputTypes(p: EntityPlan): {
  create: GraphQLInputObjectType | undefined;
  update: GraphQLInputObjectType | undefined;
} {
  const createFields: GraphQLInputFieldConfigMap = {};
  const updateFields: GraphQLInputFieldConfigMap = {};
  if (p.keyInCreate) {
    createFields[p.key] = {
      type: new GraphQLNonNull(GraphQLID),
      description: "The table's key has no default, so a new row needs one.",
    };
  }
  for (const field of p.writable) {
    const scalar: GraphQLInputType = SCALAR_TYPES[field.type];
    const required = !field.nullable && p.columns?.get(field.name)?.hasDefault !== true;
    createFields[field.name] = { type: required ? new GraphQLNonNull(scalar) : scalar };
    updateFields[field.name] = { type: scalar };
  }
  return {
    create:
      Object.keys(createFields).length === 0
        ? undefined
        : new GraphQLInputObjectType({ name: p.names.createInput, fields: createFields }),
    update:
      Object.keys(updateFields).length === 0
        ? undefined
        : new GraphQLInputObjectType({ name: p.names.updateInput, fields: updateFields }),
  };
}

function toDriverValue(field: FieldModel | undefined, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  // JSON goes as text: the pg driver would turn a JS array into a PostgreSQL array literal.
  if (field?.type === "JSON") return JSON.stringify(value);
  return value;
}

function columnValues(
  p: EntityPlan,
  input: Record<string, unknown>,
  forUpdate: boolean,
): Map<string, unknown> {
  const values = new Map<string, unknown>();
  if (!forUpdate && p.keyInCreate && input[p.key] !== undefined) values.set(p.key, input[p.key]);
  for (const field of p.writable) {
    const value = input[field.name];
    if (value === undefined) continue;
    if (value === null && forUpdate && !field.nullable) {
      throw clientError(`field "${field.name}" cannot be null`, "FQL_GRAPHQL_INPUT", {
        entity: p.entity.name,
        field: field.name,
      });
    }
    values.set(field.name, toDriverValue(field, value));
  }
  return values;
}

/**
 * Builds the GraphQL schema of the entities (SPEC §4). Per entity `Order`: the type `Order`,
 * mutations `createOrder(input: CreateOrderInput!): Order!`,
 * `updateOrder(id: ID!, input: UpdateOrderInput!): Order` (null when no row),
 * `deleteOrder(id: ID!): Order` (the deleted row, or null), and queries `order(id: ID!): Order`
 * and `orders(limit: Int = 100, offset: Int = 0): [Order!]!` ordered by key, `limit` capped at
 * {@link GraphqlOptions.maxLimit}. Every statement is parameterised with quoted identifiers.
 * Execute operations with a context from {@link createGraphqlContext} to collect `afterMutation`
 * results.
 * @throws FraiseqlError FQL_CONFIG_INVALID when an entity or field name is not a valid GraphQL name
 *   or two entities produce the same GraphQL name.
 */
export function buildSchema(entities: readonly EntityModel[], options: GraphqlOptions): GraphQLSchema {
  checkNames(entities);
  const maxLimit = options.maxLimit ?? DEFAULT_MAX_LIMIT;
  const { db } = options;
  const queryFields: GraphQLFieldConfigMap<unknown, GraphqlContext> = {};
  const mutationFields: GraphQLFieldConfigMap<unknown, GraphqlContext> = {};

  for (const entity of entities) {
    const p = plan(entity, options.columns?.get(entity.name));
    const type = outputType(p);
    const inputs = inputTypes(p);

    const run = async <T>(operation: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof GraphQLError) throw err;
        const mapped = pgErrorToGraphql(err, entity.name, p.declared);
        if (mapped.internal) options.onError?.(err, { entity: entity.name, operation });
        throw mapped.error;
      }
    };

    const committed = async (written: WrittenRow | undefined, ctx: GraphqlContext | undefined) => {
      if (written === undefined) return null;
      if (options.afterMutation !== undefined) {
        const change: MutationChange = {
          entity: entity.name,
          op: written.op,
          id: written.id,
          txid: written.txid,
          ...(written.outboxBefore === undefined ? {} : { outboxBefore: written.outboxBefore }),
        };
        try {
          const result = await options.afterMutation(change);
          ctx?.webhooks?.add(result);
        } catch (err) {
          ctx?.webhooks?.fail(change, err);
          options.onError?.(err, { entity: entity.name, operation: `afterMutation ${written.op}` });
        }
      }
      return written.row;
    };

    const idArg = { id: { type: new GraphQLNonNull(GraphQLID) } };
    const writeOptions = { columns: p.columns, outboxSequence: options.outboxSequence };

    const create: GraphQLFieldConfig<unknown, GraphqlContext, { input?: Record<string, unknown> }> = {
      type: new GraphQLNonNull(type),
      description:
        inputs.create === undefined
          ? `Inserts one ${entity.name}, with its table's defaults (it declares no field to set).`
          : `Inserts one ${entity.name}.`,
      args: inputs.create === undefined ? {} : { input: { type: new GraphQLNonNull(inputs.create) } },
      resolve: async (_root, args, ctx) => {
        const written = await run(p.names.create, () =>
          insertRow(db, entity, columnValues(p, args.input ?? {}, false), writeOptions),
        );
        return committed(written, ctx);
      },
    };
    const updateInput = inputs.update;
    const update:
      | GraphQLFieldConfig<unknown, GraphqlContext, { id: string; input: Record<string, unknown> }>
      | undefined =
      updateInput === undefined
        ? undefined
        : {
            type,
            description: `Updates the given fields of one ${entity.name}; null when no row has that id. An empty input changes nothing and returns the row.`,
            args: { ...idArg, input: { type: new GraphQLNonNull(updateInput) } },
            resolve: async (_root, args, ctx) => {
              const values = columnValues(p, args.input, true);
              if (values.size === 0)
                return (await run(p.names.update, () => getRow(db, entity, args.id, p.columns))) ?? null;
              const written = await run(p.names.update, () =>
                updateRow(db, entity, args.id, values, writeOptions),
              );
              return committed(written, ctx);
            },
          };
    const remove: GraphQLFieldConfig<unknown, GraphqlContext, { id: string }> = {
      type,
      description: `Deletes one ${entity.name} and returns it; null when no row has that id.`,
      args: idArg,
      resolve: async (_root, args, ctx) => {
        const written = await run(p.names.delete, () => deleteRow(db, entity, args.id, writeOptions));
        return committed(written, ctx);
      },
    };
    const get: GraphQLFieldConfig<unknown, GraphqlContext, { id: string }> = {
      type,
      description: `One ${entity.name} by id, or null.`,
      args: idArg,
      resolve: async (_root, args) =>
        (await run(p.names.get, () => getRow(db, entity, args.id, p.columns))) ?? null,
    };
    const list: GraphQLFieldConfig<unknown, GraphqlContext, { limit: number; offset: number }> = {
      type: new GraphQLNonNull(new GraphQLList(new GraphQLNonNull(type))),
      description: `A page of ${entity.name} rows ordered by id. limit defaults to ${DEFAULT_LIMIT} and is capped at ${maxLimit}.`,
      args: {
        limit: { type: GraphQLInt, defaultValue: DEFAULT_LIMIT },
        offset: { type: GraphQLInt, defaultValue: 0 },
      },
      resolve: async (_root, args) => {
        const limit = args.limit ?? DEFAULT_LIMIT;
        const offset = args.offset ?? 0;
        if (limit < 0)
          throw clientError("limit must not be negative", "FQL_GRAPHQL_INPUT", { entity: entity.name });
        if (offset < 0)
          throw clientError("offset must not be negative", "FQL_GRAPHQL_INPUT", { entity: entity.name });
        return run(p.names.list, () =>
          listRows(db, entity, { limit: Math.min(limit, maxLimit), offset }, p.columns),
        );
      },
    };

    mutationFields[p.names.create] = create as GraphQLFieldConfig<unknown, GraphqlContext>;
    if (update !== undefined)
      mutationFields[p.names.update] = update as GraphQLFieldConfig<unknown, GraphqlContext>;
    mutationFields[p.names.delete] = remove as GraphQLFieldConfig<unknown, GraphqlContext>;
    queryFields[p.names.get] = get as GraphQLFieldConfig<unknown, GraphqlContext>;
    queryFields[p.names.list] = list as GraphQLFieldConfig<unknown, GraphqlContext>;
  }

  if (entities.length === 0) {
    // A schema needs a query type with at least one field.
    queryFields._entities = {
      type: new GraphQLNonNull(GraphQLInt),
      description: "No entities are declared.",
      resolve: () => 0,
    };
  }
  const schema = new GraphQLSchema({
    query: new GraphQLObjectType({ name: "Query", fields: queryFields }),
    ...(Object.keys(mutationFields).length > 0
      ? { mutation: new GraphQLObjectType({ name: "Mutation", fields: mutationFields }) }
      : {}),
  });
  // Checked here, at startup: graphql-js would otherwise find it invalid at the first request
  // and answer every request with an error.
  const problems = validateSchema(schema);
  if (problems.length > 0) {
    throw new FraiseqlError(
      "FQL_CONFIG_INVALID",
      `the GraphQL schema made from the entities is invalid: ${problems.map((e) => e.message).join("; ")}`,
      { key: "entities" },
    );
  }
  return schema;
}
