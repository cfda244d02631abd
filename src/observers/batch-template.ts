import type { FieldModel } from "../config/types.js";
import { type CompiledBodyTemplate, compileBodyTemplate, type TemplateContext } from "./template.js";

/** A body template for a batch of events (SPEC §5.2). */
export interface CompiledBatchBody {
  /**
   * Renders one body for `events` (in order). An array holding one templated element becomes one
   * element per event; every other placeholder renders once, from the first event, with
   * `_timestamp` the send time and `_count` the number of events.
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
 */
export function compileBatchBody(
  body: unknown,
  options: { fields?: readonly FieldModel[] } = {},
): CompiledBatchBody {
  const root = compileNode(body, options.fields);
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
