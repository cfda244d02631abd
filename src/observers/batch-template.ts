import type { FieldModel } from "../config/types.js";
import { type CompiledBodyTemplate, compileBodyTemplate, type TemplateContext } from "./template.js";

/** A body template for a batch of events (SPEC §5.2). */
export interface CompiledBatchBody {
  /**
   * Renders one body for `events` (in order). An array holding one templated element becomes one
   * element per event; every other placeholder renders once, from the first event, with
   * `_timestamp` the send time and `_count` the number of events. A body without such an array
   * is a body per event: the request is `{"count", "timestamp", "events": [<body per event>]}`.
   */
  render(events: readonly TemplateContext[], sendTime: string): unknown;
}

type Node =
  | { kind: "once"; template: CompiledBodyTemplate }
  | { kind: "each"; template: CompiledBodyTemplate }
  | { kind: "array"; items: Node[] }
  | { kind: "object"; entries: [string, Node][] }
  | { kind: "value"; value: unknown };

function hasPlaceholder(value: unknown): boolean {
  if (typeof value === "string") return value.includes("{{");
  if (Array.isArray(value)) return value.some(hasPlaceholder);
  if (value !== null && typeof value === "object") return Object.values(value).some(hasPlaceholder);
  return false;
}

const BATCH_NAMES = ["_count", "_timestamp"];

function compileNode(value: unknown, fields: readonly FieldModel[] | undefined): Node {
  const options = fields === undefined ? { extraNames: BATCH_NAMES } : { fields, extraNames: BATCH_NAMES };
  if (Array.isArray(value)) {
    if (value.length === 1 && hasPlaceholder(value[0])) {
      return { kind: "each", template: compileBodyTemplate(value[0], options) };
    }
    return { kind: "array", items: value.map((v) => compileNode(v, fields)) };
  }
  if (value !== null && typeof value === "object") {
    return { kind: "object", entries: Object.entries(value).map(([k, v]) => [k, compileNode(v, fields)]) };
  }
  if (typeof value === "string" && value.includes("{{")) {
    return { kind: "once", template: compileBodyTemplate(value, options) };
  }
  return { kind: "value", value };
}

function expands(node: Node): boolean {
  switch (node.kind) {
    case "each":
      return true;
    case "array":
      return node.items.some(expands);
    case "object":
      return node.entries.some(([, n]) => expands(n));
    default:
      return false;
  }
}

function renderNode(node: Node, events: readonly TemplateContext[], once: TemplateContext): unknown {
  switch (node.kind) {
    case "once":
      return node.template.render(once);
    case "each":
      return events.map((e) => node.template.render(e));
    case "array":
      return node.items.map((n) => renderNode(n, events, once));
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [k, n] of node.entries) out[k] = renderNode(n, events, once);
      return out;
    }
    case "value":
      return node.value;
  }
}

/**
 * Compiles a batch body. Without a body template, a batch is sent as
 * `{"count": n, "timestamp": <send time>, "events": [<event envelope>, ...]}`, built by the caller.
 *
 * A body with no array to expand (a body written for one event, as under `[webhooks.batching]`,
 * which applies to every action) is rendered once per event, as it would be sent alone (its
 * `_timestamp` the event's time, `_count` the batch size), into the same envelope:
 * `{"count": n, "timestamp": <send time>, "events": [<body>, ...]}`. Rendering it once, from the
 * first event, would send one event's data for the whole batch.
 */
export function compileBatchBody(
  body: unknown,
  options: { fields?: readonly FieldModel[] } = {},
): CompiledBatchBody {
  const root = compileNode(body, options.fields);
  if (!expands(root)) {
    const perEvent = compileBodyTemplate(
      body,
      options.fields === undefined
        ? { extraNames: ["_count"] }
        : { fields: options.fields, extraNames: ["_count"] },
    );
    return {
      render(events, sendTime) {
        const count = events.length;
        return {
          count,
          timestamp: sendTime,
          events: events.map((e) => perEvent.render({ ...e, extra: { ...e.extra, _count: count } })),
        };
      },
    };
  }
  return {
    render(events, sendTime) {
      const first = events[0];
      if (first === undefined)
        return renderNode(root, events, {
          event: "INSERT",
          old: null,
          new: null,
          entity: "",
          observer: "",
          eventId: "",
          timestamp: sendTime,
        });
      const once: TemplateContext = {
        ...first,
        extra: { ...first.extra, _timestamp: sendTime, _count: events.length },
      };
      return renderNode(root, events, once);
    },
  };
}
