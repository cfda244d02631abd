/**
 * Limits on what one GraphQL operation may ask for, as validation rules: field depth, complexity
 * (an estimate of the values the answer can hold) and introspection. They run before any
 * resolver, so a refused operation never touches the database. Their errors say which limit was
 * exceeded and by how much, never anything about the schema's internals.
 *
 * Introspection fields (`__schema`, `__type`) are left out of depth and complexity: whether they
 * may be queried at all is the `introspection` switch, and graphql-js's own
 * `MaxIntrospectionDepthRule` (one of the specified rules) bounds their nesting.
 */

import {
  type ASTVisitor,
  type FieldNode,
  type FragmentDefinitionNode,
  GraphQLError,
  type GraphQLNamedType,
  getNamedType,
  getNullableType,
  isInterfaceType,
  isListType,
  isObjectType,
  Kind,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from "graphql";
import { DEFAULT_LIMIT, DEFAULT_MAX_LIMIT } from "./schema.js";

/** Default of `[server] max_depth`. */
export const DEFAULT_MAX_DEPTH = 10;
/** Default of `[server] max_complexity`. */
export const DEFAULT_MAX_COMPLEXITY = 50_000;

/** Options of {@link operationLimitRules}. */
export interface OperationLimits {
  /** Deepest field nesting: `{ orders { id } }` is 2. (Default: 10) */
  readonly maxDepth?: number;
  /**
   * Largest complexity: every field counts 1, times the page size of each list field above it
   * (its `limit` argument, literal or variable, else the argument's default, else 100, capped
   * at `maxListLimit`). `{ orders(limit: 50) { id total } }` is 1 + 50 * 2 = 101. (Default: 50000)
   */
  readonly maxComplexity?: number;
  /** Whether `__schema` and `__type` may be queried. (Default: true) */
  readonly introspection?: boolean;
  /** The largest `limit` a list honours, as given to `buildSchema`. (Default: 1000) */
  readonly maxListLimit?: number;
}

function isIntrospectionRoot(name: string): boolean {
  return name === "__schema" || name === "__type";
}

/** Deepest field nesting of a selection set; fragments are measured once each (a cycle counts 0). */
function depthRule(maxDepth: number): ValidationRule {
  return (context: ValidationContext): ASTVisitor => {
    const fragmentDepth = new Map<string, number>();
    const measure = (set: SelectionSetNode): number => {
      let deepest = 0;
      for (const selection of set.selections) {
        if (selection.kind === Kind.FIELD) {
          if (isIntrospectionRoot(selection.name.value)) continue;
          const below = selection.selectionSet === undefined ? 0 : measure(selection.selectionSet);
          deepest = Math.max(deepest, 1 + below);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          deepest = Math.max(deepest, measure(selection.selectionSet));
        } else {
          deepest = Math.max(deepest, spreadDepth(selection.name.value));
        }
      }
      return deepest;
    };
    const spreadDepth = (name: string): number => {
      const known = fragmentDepth.get(name);
      if (known !== undefined) return known;
      const fragment = context.getFragment(name);
      if (fragment === undefined || fragment === null) return 0;
      // NoFragmentCyclesRule reports cycles; here a cycle must only not loop.
      fragmentDepth.set(name, 0);
      const depth = measure(fragment.selectionSet);
      fragmentDepth.set(name, depth);
      return depth;
    };
    return {
      OperationDefinition(node) {
        const depth = measure(node.selectionSet);
        if (depth > maxDepth) {
          context.reportError(
            new GraphQLError(`the operation is nested ${depth} fields deep; the limit is ${maxDepth}`, {
              nodes: [node],
              extensions: { code: "FQL_GRAPHQL_INPUT", limit: "depth", value: depth, max: maxDepth },
            }),
          );
        }
      },
    };
  };
}

function complexityRule(
  maxComplexity: number,
  maxListLimit: number,
  variables: Readonly<Record<string, unknown>>,
): ValidationRule {
  return (context: ValidationContext): ASTVisitor => {
    const schema = context.getSchema();
    // Per operation: its variables' defaults count where the request leaves them out.
    let values: Readonly<Record<string, unknown>> = variables;
    let fragmentCost = new Map<string, number>();

    const pageSize = (field: FieldNode, defaultValue: unknown): number => {
      let size: unknown = defaultValue ?? DEFAULT_LIMIT;
      const arg = field.arguments?.find((a) => a.name.value === "limit");
      if (arg?.value.kind === Kind.INT) size = Number(arg.value.value);
      else if (arg?.value.kind === Kind.VARIABLE) size = values[arg.value.name.value] ?? defaultValue;
      const n = typeof size === "number" && Number.isFinite(size) ? size : DEFAULT_LIMIT;
      return Math.max(0, Math.min(n, maxListLimit));
    };

    const cost = (set: SelectionSetNode, parent: GraphQLNamedType | undefined): number => {
      let total = 0;
      for (const selection of set.selections) {
        if (selection.kind === Kind.FIELD) {
          const name = selection.name.value;
          if (isIntrospectionRoot(name)) continue;
          const def =
            parent !== undefined && (isObjectType(parent) || isInterfaceType(parent))
              ? parent.getFields()[name]
              : undefined;
          let below = 0;
          if (selection.selectionSet !== undefined) {
            below = cost(selection.selectionSet, def === undefined ? undefined : getNamedType(def.type));
          }
          const list = def !== undefined && isListType(getNullableType(def.type));
          const limitArg = def?.args.find((a) => a.name === "limit");
          total += 1 + (list ? pageSize(selection, limitArg?.defaultValue) : 1) * below;
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          const on = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent;
          total += cost(selection.selectionSet, on ?? undefined);
        } else {
          total += spreadCost(context.getFragment(selection.name.value));
        }
      }
      return total;
    };

    const spreadCost = (fragment: FragmentDefinitionNode | null | undefined): number => {
      if (fragment === undefined || fragment === null) return 0;
      const name = fragment.name.value;
      const known = fragmentCost.get(name);
      if (known !== undefined) return known;
      // Each fragment is costed once, so nested spreads cannot make this check itself expensive.
      fragmentCost.set(name, 0);
      const value = cost(
        fragment.selectionSet,
        schema.getType(fragment.typeCondition.name.value) ?? undefined,
      );
      fragmentCost.set(name, value);
      return value;
    };

    return {
      OperationDefinition(node) {
        const defaults: Record<string, unknown> = {};
        for (const def of node.variableDefinitions ?? []) {
          if (def.defaultValue?.kind === Kind.INT)
            defaults[def.variable.name.value] = Number(def.defaultValue.value);
        }
        values = { ...defaults, ...variables };
        fragmentCost = new Map();
        const root =
          node.operation === "query"
            ? schema.getQueryType()
            : node.operation === "mutation"
              ? schema.getMutationType()
              : schema.getSubscriptionType();
        const value = cost(node.selectionSet, root ?? undefined);
        if (value > maxComplexity) {
          context.reportError(
            new GraphQLError(
              `the operation's complexity is ${value}; the limit is ${maxComplexity} (ask for fewer fields, rows or aliases)`,
              {
                nodes: [node],
                extensions: { code: "FQL_GRAPHQL_INPUT", limit: "complexity", value, max: maxComplexity },
              },
            ),
          );
        }
      },
    };
  };
}

const noIntrospection: ValidationRule = (context) => ({
  Field(node) {
    if (!isIntrospectionRoot(node.name.value)) return;
    context.reportError(
      new GraphQLError("introspection is disabled on this server", {
        nodes: [node],
        extensions: { code: "FQL_GRAPHQL_INPUT", limit: "introspection" },
      }),
    );
  },
});

/**
 * The validation rules enforcing `limits` for one request; `variables` are the request's
 * variables (a `limit: $n` argument is costed with its value).
 */
export function operationLimitRules(
  limits: OperationLimits,
  variables: Readonly<Record<string, unknown>> = {},
): ValidationRule[] {
  const rules: ValidationRule[] = [
    depthRule(limits.maxDepth ?? DEFAULT_MAX_DEPTH),
    complexityRule(
      limits.maxComplexity ?? DEFAULT_MAX_COMPLEXITY,
      limits.maxListLimit ?? DEFAULT_MAX_LIMIT,
      variables,
    ),
  ];
  if (limits.introspection === false) rules.push(noIntrospection);
  return rules;
}
