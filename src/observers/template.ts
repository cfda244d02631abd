/**
 * `{{ expr }}` templates of webhook URLs, headers and bodies (SPEC §5.2; reference: docs/templates.md).
 *
 * ```ts
 * const body = compileBodyTemplate({ order_id: "{{ id }}", total: "{{ total }}", note: "Order {{ id }}" });
 * body.render(ctx); // { order_id: 42, total: 99.99, note: "Order 42" }
 * ```
 *
 * Templates are compiled once into closures and rendered per delivery without parsing or
 * regular expressions. Rendering is a single pass: text that comes out of the data (even text
 * holding `{{`) is never looked at again.
 */

import type { FieldModel } from "../config/types.js";
import { FraiseqlError } from "../errors.js";
import type { ConditionContext } from "./condition.js";
import {
  compileReader,
  nearestName,
  type PathSegment,
  parsePathText,
  readKey,
  resolvePath,
} from "./paths.js";

/** What a template is rendered against: one change of one entity, seen by one observer. */
export interface TemplateContext extends ConditionContext {
  entity: string;
  observer: string;
  /** event id */
  eventId: string;
  /** ISO 8601 UTC of the change */
  timestamp: string;
  /** extra names such as _count for batches; they take precedence over the built-in names */
  extra?: Record<string, unknown>;
}

/** A string template (URL, header value) compiled once. */
export interface CompiledStringTemplate {
  readonly source: string;
  /** Top-level entity fields referenced, in order of first appearance. */
  readonly fields: readonly string[];
  render(ctx: TemplateContext): string;
}

/** A JSON body template compiled once. */
export interface CompiledBodyTemplate {
  /** Top-level entity fields referenced, in order of first appearance. */
  readonly fields: readonly string[];
  /**
   * Renders the body: a fresh object/array tree; values taken whole from the row (a `"{{ items }}"`
   * array) are shared with the context, not copied.
   */
  render(ctx: TemplateContext): unknown;
}

/** Options shared by both template kinds. */
export interface TemplateOptions {
  /** Declared fields; when given, unknown names are FQL_TEMPLATE_UNKNOWN_FIELD errors. (Default: unchecked) */
  fields?: readonly FieldModel[];
  /**
   * Names beginning with `_` that `extra` will supply at render time, accepted when `fields` are
   * checked. (Default: ["_count"])
   */
  extraNames?: readonly string[];
}

/** The names every template can use, besides entity fields. */
export const BUILTIN_NAMES = ["_timestamp", "_event", "_entity", "_observer", "_id"] as const;

const BUILTINS: Readonly<Record<string, (ctx: TemplateContext) => unknown>> = {
  _timestamp: (ctx) => ctx.timestamp,
  _event: (ctx) => ctx.event,
  _entity: (ctx) => ctx.entity,
  _observer: (ctx) => ctx.observer,
  _id: (ctx) => ctx.eventId,
};

const DEFAULT_EXTRA_NAMES: readonly string[] = ["_count"];

type Getter = (ctx: TemplateContext) => unknown;

/** One piece of a string template: literal text, or a value to interpolate. */
type Part = string | Getter;

interface ParsedTemplate {
  readonly parts: readonly Part[];
  /** True when the whole string is exactly one placeholder. */
  readonly single: boolean;
}

interface CompileState {
  readonly options: TemplateOptions;
  readonly fields: string[];
}

/**
 * Compiles a URL or header template. With `encode: "uri-component"` every interpolated value is
 * percent-encoded (the literal text around it is kept as written). (Default encode: "none")
 */
export function compileStringTemplate(
  source: string,
  options: {
    fields?: readonly FieldModel[];
    encode?: "none" | "uri-component";
    extraNames?: readonly string[];
  } = {},
): CompiledStringTemplate {
  if (typeof source !== "string") {
    throw new FraiseqlError("FQL_TEMPLATE_SYNTAX", "a template must be a string", {
      expression: String(source),
    });
  }
  const state: CompileState = { options, fields: [] };
  const parsed = parseTemplate(source, state, undefined);
  const encode = options.encode === "uri-component" ? encodeComponent : identity;
  const render = stringRenderer(parsed.parts, encode);
  return Object.freeze({ source, fields: Object.freeze(state.fields), render });
}

/**
 * Compiles a JSON body template. Every string value may hold placeholders; a string that is exactly
 * one placeholder renders as the value itself with its JSON type (missing: null); object keys are
 * kept as written, never templated.
 */
export function compileBodyTemplate(body: unknown, options: TemplateOptions = {}): CompiledBodyTemplate {
  const state: CompileState = { options, fields: [] };
  const node = compileNode(body, "body", state);
  const render: (ctx: TemplateContext) => unknown = node.constant ? () => node.value : node.render;
  return Object.freeze({ fields: Object.freeze(state.fields), render });
}

type BodyNode =
  | { readonly constant: true; readonly value: unknown }
  | { readonly constant: false; readonly render: (ctx: TemplateContext) => unknown };

function compileNode(value: unknown, where: string, state: CompileState): BodyNode {
  if (typeof value === "string") {
    const parsed = parseTemplate(value, state, where);
    const only = parsed.parts[0];
    if (only === undefined) return { constant: true, value: "" };
    if (parsed.single) {
      const getter = only as Getter;
      return { constant: false, render: (ctx) => asJson(getter(ctx)) };
    }
    if (parsed.parts.length === 1 && typeof only === "string") return { constant: true, value: only };
    return { constant: false, render: stringRenderer(parsed.parts, identity) };
  }
  if (value === null || typeof value === "number" || typeof value === "boolean")
    return { constant: true, value };
  if (value === undefined) return { constant: true, value: null };
  // Containers are rebuilt on every render, even without placeholders, so a caller may change a
  // rendered body (e.g. encrypt fields in place) without touching the template or other renders.
  if (Array.isArray(value)) {
    const items = value.map((item, i) => compileNode(item, `${where}[${i}]`, state));
    return {
      constant: false,
      render: (ctx) => {
        const out = new Array<unknown>(items.length);
        for (let i = 0; i < items.length; i++) out[i] = renderNode(items[i]!, ctx);
        return out;
      },
    };
  }
  if (isPlainObject(value)) {
    const entries: [string, BodyNode][] = [];
    for (const [key, child] of Object.entries(value)) {
      if (child === undefined) continue;
      entries.push([key, compileNode(child, `${where}${keyAccess(key)}`, state)]);
    }
    return {
      constant: false,
      render: (ctx) => {
        const out: Record<string, unknown> = {};
        for (const [key, node] of entries) defineValue(out, key, renderNode(node, ctx));
        return out;
      },
    };
  }
  // Dates (TOML datetimes included) and other JSON-able objects become what JSON makes of them.
  const json = JSON.stringify(value, jsonReplacer);
  return compileNode(json === undefined ? null : JSON.parse(json), where, state);
}

function renderNode(node: BodyNode, ctx: TemplateContext): unknown {
  return node.constant ? node.value : node.render(ctx);
}

// A key such as "__proto__" must become an own property, not change the prototype.
function defineValue(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function keyAccess(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

function identity(text: string): string {
  return text;
}

function asJson(value: unknown): unknown {
  return value === undefined ? null : value;
}

function stringRenderer(
  parts: readonly Part[],
  encode: (text: string) => string,
): (ctx: TemplateContext) => string {
  if (parts.length === 0) return () => "";
  if (parts.length === 1) {
    const only = parts[0]!;
    if (typeof only === "string") return () => only;
    return (ctx) => encode(toText(only(ctx)));
  }
  return (ctx) => {
    let out = "";
    for (const part of parts) out += typeof part === "string" ? part : encode(toText(part(ctx)));
    return out;
  };
}

/**
 * How a value reads inside longer text: null as "", text as is, numbers and booleans as JSON
 * writes them, objects and arrays as compact JSON.
 */
export function toText(value: unknown): string {
  if (value === null || value === undefined) return "";
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "boolean":
    case "bigint":
      return String(value);
    default:
      if (value instanceof Date) return value.toISOString();
      return JSON.stringify(value, jsonReplacer) ?? "";
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

function encodeComponent(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    // A lone surrogate cannot be percent-encoded; it becomes U+FFFD like any ill-formed UTF-16.
    return encodeURIComponent(
      text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd"),
    );
  }
}

const OPEN = "{{";
const CLOSE = "}}";

/** Splits a template into literal text and compiled getters. `\{{` writes a literal `{{`. */
function parseTemplate(source: string, state: CompileState, where: string | undefined): ParsedTemplate {
  const parts: Part[] = [];
  let text = "";
  let i = 0;
  let placeholders = 0;
  for (;;) {
    const open = source.indexOf(OPEN, i);
    if (open === -1) {
      text += source.slice(i);
      break;
    }
    if (open > 0 && source.charCodeAt(open - 1) === 92) {
      text += source.slice(i, open - 1) + OPEN;
      i = open + 2;
      continue;
    }
    text += source.slice(i, open);
    const close = source.indexOf(CLOSE, open + 2);
    if (close === -1) {
      throw new FraiseqlError("FQL_TEMPLATE_SYNTAX", withWhere(where, "{{ is not closed by }}"), {
        expression: source,
        position: open,
        hint: "Write {{ field }}, or \\{{ for a literal {{.",
      });
    }
    if (text !== "") parts.push(text);
    text = "";
    parts.push(compilePlaceholder(source, open + 2, close, state, where));
    placeholders++;
    i = close + 2;
  }
  if (text !== "") parts.push(text);
  return { parts, single: placeholders === 1 && parts.length === 1 };
}

function withWhere(where: string | undefined, message: string): string {
  return where === undefined ? message : `${where}: ${message}`;
}

function compilePlaceholder(
  source: string,
  start: number,
  end: number,
  state: CompileState,
  where: string | undefined,
): Getter {
  const segments = parsePathText(source, start, end, "FQL_TEMPLATE_SYNTAX", where);
  const first = segments[0]!;
  if (first.name.startsWith("_")) return compileName(source, segments, state, where);
  const path = resolvePath(segments, {
    fields: state.options.fields,
    expression: source,
    context: where,
    codes: {
      syntax: "FQL_TEMPLATE_SYNTAX",
      unknownField: "FQL_TEMPLATE_UNKNOWN_FIELD",
      type: "FQL_TEMPLATE_UNKNOWN_FIELD",
    },
  });
  if (!state.fields.includes(path.field)) state.fields.push(path.field);
  return compileReader(path.image, path.field, path.keys) as Getter;
}

/** `_name`: a value from `extra` when present, else a built-in, else the entity field of that name. */
function compileName(
  source: string,
  segments: readonly PathSegment[],
  state: CompileState,
  where: string | undefined,
): Getter {
  const first = segments[0]!;
  const name = first.name;
  const keys = segments.slice(1).map((s) => s.name);
  const builtin = Object.hasOwn(BUILTINS, name) ? BUILTINS[name] : undefined;
  const extraNames = state.options.extraNames ?? DEFAULT_EXTRA_NAMES;
  const fields = state.options.fields;
  const declared = fields?.find((f) => f.name === name);
  if (fields !== undefined && builtin === undefined && declared === undefined && !extraNames.includes(name)) {
    const known = [...BUILTIN_NAMES, ...extraNames];
    const nearest = nearestName(name, [...known, ...fields.map((f) => f.name)]);
    throw new FraiseqlError(
      "FQL_TEMPLATE_UNKNOWN_FIELD",
      withWhere(where, `unknown name "${name}"; the names are ${known.join(", ")} and the entity's fields`),
      {
        expression: source,
        position: first.start,
        ...(name === "_count"
          ? {
              hint: "_count is the number of events in a batch: only the body of a batched action (batch = { ... }, or [webhooks.batching] enabled) has it",
            }
          : nearest === undefined
            ? {}
            : { hint: `did you mean ${nearest}?` }),
      },
    );
  }
  if (declared !== undefined && builtin === undefined) {
    if (!state.fields.includes(name)) state.fields.push(name);
  }
  const fallback: Getter = builtin ?? (compileReader("current", name, []) as Getter);
  const base: Getter = (ctx) => {
    const extra = ctx.extra;
    if (extra !== undefined && Object.hasOwn(extra, name)) return asJson(extra[name]);
    return fallback(ctx);
  };
  if (keys.length === 0) return base;
  return (ctx) => {
    let value = base(ctx);
    for (const key of keys) value = readKey(value, key);
    return value;
  };
}
