import { createHash } from "node:crypto";
import type { CapturedEvent } from "../capture/outbox.js";
import type {
  BatchPolicy,
  EntityModel,
  ObserverModel,
  ResolvedConfig,
  WebhookAction,
} from "../config/types.js";
import { keyColumn } from "../entities/ddl.js";
import { type CompiledBatchBody, compileBatchBody } from "./batch-template.js";
import { type CompiledCondition, type ConditionContext, compileCondition } from "./condition.js";
import {
  type CompiledBodyTemplate,
  type CompiledStringTemplate,
  compileBodyTemplate,
  compileStringTemplate,
} from "./template.js";

/** An action with its expressions compiled once, for the hot path. */
export interface RuntimeAction {
  readonly model: WebhookAction;
  readonly condition: CompiledCondition | undefined;
  readonly url: CompiledStringTemplate;
  readonly headers: readonly (readonly [string, CompiledStringTemplate])[];
  readonly body: CompiledBodyTemplate | undefined;
  /** The action's `batch`, or `[webhooks.batching]` when that is enabled; undefined: one request per event. */
  readonly batch: BatchPolicy | undefined;
  /** Set when `batch` and a body are: the body template for a batch (no body: the default batch envelope). */
  readonly batchBody: CompiledBatchBody | undefined;
  /** `observer:index`, the key deliveries of a batched action are grouped by. */
  readonly batchKey: string | undefined;
  /**
   * The action's identity beyond its index, stored on its deliveries (`action_sig`): a short
   * hash of its method and url template. See {@link actionOf}.
   */
  readonly sig: string;
}

/**
 * {@link RuntimeAction.sig} of an action: a hash of its method and url template, then `.` and
 * the number of actions its observer has (`Xb3kq0aZ9_Qe.2`).
 */
export function actionSig(method: string, url: string, actions: number): string {
  return `${createHash("sha256").update(`${method}\0${url}`).digest("base64url").slice(0, 12)}.${actions}`;
}

/** The hash part of an action signature (what names the action; the count after `.` does not). */
export function sigHash(sig: string): string {
  const dot = sig.indexOf(".");
  return dot < 0 ? sig : sig.slice(0, dot);
}

/**
 * The action a delivery is for:
 * - the one at its index when its method and url match (or the delivery has no signature,
 *   routed before signatures);
 * - else the one action of the observer with its method and url (the actions were reordered,
 *   or one inserted or removed, since it was routed);
 * - else, when the observer still has as many actions as then, the one at its index (that
 *   action was edited in place: its deliveries go where it now points);
 * - else none (its action was removed): the delivery is not sent to another action.
 */
export function actionOf(
  observer: RuntimeObserver,
  index: number,
  sig: string | null | undefined,
): RuntimeAction | undefined {
  return pickAction(observer.actions, index, sig, (a) => a.sig);
}

/** {@link actionOf} over any list of actions, given how to read an action's signature. */
export function pickAction<A>(
  actions: readonly A[],
  index: number,
  sig: string | null | undefined,
  sigOf: (action: A) => string,
): A | undefined {
  const at = actions[index];
  if (sig === null || sig === undefined) return at;
  const hash = sigHash(sig);
  if (at !== undefined && sigHash(sigOf(at)) === hash) return at;
  const same = actions.filter((a) => sigHash(sigOf(a)) === hash);
  if (same.length === 1) return same[0];
  return sig.endsWith(`.${actions.length}`) ? at : undefined;
}

/** An observer with its expressions compiled once. */
export interface RuntimeObserver {
  readonly model: ObserverModel;
  readonly entity: EntityModel;
  readonly condition: CompiledCondition | undefined;
  readonly actions: readonly RuntimeAction[];
}

/** Observers indexed by `entity:event` for matching. */
export interface ObserverRegistry {
  readonly byName: ReadonlyMap<string, RuntimeObserver>;
  match(entity: string, op: string): readonly RuntimeObserver[];
}

export function compileObservers(config: ResolvedConfig): ObserverRegistry {
  const entities = new Map(config.entities.map((e) => [e.name, e]));
  const byName = new Map<string, RuntimeObserver>();
  const byKey = new Map<string, RuntimeObserver[]>();
  for (const model of config.observers) {
    const entity = entities.get(model.entity);
    if (!entity) throw new Error(`observer ${model.name}: unknown entity ${model.entity}`);
    const fields = entity.fields;
    const runtime: RuntimeObserver = {
      model,
      entity,
      condition: model.condition === undefined ? undefined : compileCondition(model.condition, { fields }),
      actions: model.actions.map((action) => {
        const global = config.webhooks.batching;
        const batch: BatchPolicy | undefined =
          action.batch ?? (global.enabled ? { size: global.batchSize, timeout: global.timeout } : undefined);
        return {
          model: action,
          condition:
            action.condition === undefined ? undefined : compileCondition(action.condition, { fields }),
          // `[webhooks] test_url` sends every webhook there instead (local testing, a tunnel).
          url: compileStringTemplate(config.webhooks.testUrl ?? action.url, {
            fields,
            encode: "uri-component",
          }),
          headers: Object.entries(action.headers).map(
            ([name, value]) => [name, compileStringTemplate(value, { fields, encode: "none" })] as const,
          ),
          body: action.body === undefined ? undefined : compileBodyTemplate(action.body, { fields }),
          batch,
          batchBody:
            batch === undefined || action.body === undefined
              ? undefined
              : compileBatchBody(action.body, { fields }),
          batchKey: batch === undefined ? undefined : `${model.name}:${action.index}`,
          sig: actionSig(action.method, action.url, model.actions.length),
        };
      }),
    };
    byName.set(model.name, runtime);
    const key = `${model.entity}:${model.event}`;
    const list = byKey.get(key) ?? [];
    list.push(runtime);
    byKey.set(key, list);
  }
  return {
    byName,
    match: (entity, op) => byKey.get(`${entity}:${op}`) ?? [],
  };
}

/** A delivery decided by routing, before it is written to the queue. */
export interface PlannedDelivery {
  readonly id: string;
  readonly eventId: string;
  readonly observer: string;
  readonly actionIndex: number;
  /** `waiting` deliveries start when `dependsOn` succeeds (sequential execution). */
  readonly status: "pending" | "waiting";
  readonly dependsOn: string | null;
  /** Set for observers with `ordering = "per_key"`: observer and row key. */
  readonly orderingKey: string | null;
  /** Set for batched actions: the group the delivery waits in until its batch is sent. */
  readonly batchKey: string | null;
  /** {@link RuntimeAction.sig} of its action. */
  readonly actionSig: string;
}

export function conditionContext(event: CapturedEvent): ConditionContext {
  return { event: event.op, old: event.old, new: event.new };
}

/**
 * The id of the delivery of event `eventId`, captured at `capturedMs` (unix ms), to action
 * `actionIndex` of `observer` in the installation `instance` (a random UUID kept in the
 * database). A UUID version 7 (RFC 9562) whose 122 free bits are, in order: the capture time in
 * milliseconds (48 bits), the event id modulo 2^30 as a counter within the millisecond (12 bits
 * in `rand_a`, 18 at the start of `rand_b`, RFC 9562's "fixed bit-length dedicated counter"),
 * and 44 bits of the SHA-256 of installation, event, observer and action.
 *
 * The same event, routed again, gets the same ids; installations never share them; and ids sort
 * by event, so the deliveries written and claimed together sit together in the primary key's
 * index instead of on one random page of it each.
 */
export function deliveryId(
  instance: string,
  eventId: string,
  capturedMs: number,
  observer: string,
  actionIndex: number,
): string {
  const h = createHash("sha256").update(`${instance}\0${eventId}\0${observer}\0${actionIndex}`).digest();
  const ms = Number.isFinite(capturedMs) && capturedMs > 0 ? Math.floor(capturedMs) : 0;
  // The outbox's ids are bigints: exact past 2^53 too, as fraiseql.event_delivery_id_bound computes it.
  const counter = /^\d+$/.test(eventId) ? Number(BigInt(eventId) % 0x4000_0000n) : 0;
  // 48 bits of milliseconds, big-endian: the high 16 bits, then the low 32.
  h.writeUInt16BE(Math.floor(ms / 0x1_0000_0000) & 0xffff, 0);
  h.writeUInt32BE(ms % 0x1_0000_0000, 2);
  const high = counter >>> 18; // 12 bits
  const low = counter & 0x3ffff; // 18 bits
  h[6] = 0x70 | (high >>> 8);
  h[7] = high & 0xff;
  h[8] = 0x80 | (low >>> 12);
  h[9] = (low >>> 4) & 0xff;
  h[10] = ((low & 0x0f) << 4) | ((h[10] as number) & 0x0f);
  const hex = h.toString("hex", 0, 16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Decides the deliveries of one event: every observer of its entity and kind whose condition
 * holds, and within it every action whose own condition holds. In a sequential observer each
 * delivery waits for the one before it; an action whose condition is false is skipped and the
 * chain goes on. Ids come from {@link deliveryId} with `instance`.
 */
export function planDeliveries(
  event: CapturedEvent,
  registry: ObserverRegistry,
  instance: string,
): PlannedDelivery[] {
  const planned: PlannedDelivery[] = [];
  const ctx = conditionContext(event);
  const capturedMs = Date.parse(event.timestamp);
  for (const observer of registry.match(event.entity, event.op)) {
    if (observer.condition && !observer.condition.evaluate(ctx)) continue;
    const sequential = observer.model.execution === "sequential";
    let orderingKey: string | null = null;
    if (observer.model.ordering === "per_key") {
      const row = event.new ?? event.old;
      orderingKey = `${observer.model.name}:${JSON.stringify(row?.[keyColumn(observer.entity)] ?? null)}`;
    }
    let previous: string | null = null;
    for (const action of observer.actions) {
      if (action.condition && !action.condition.evaluate(ctx)) continue;
      const id = deliveryId(instance, event.id, capturedMs, observer.model.name, action.model.index);
      planned.push({
        id,
        eventId: event.id,
        observer: observer.model.name,
        actionIndex: action.model.index,
        status: sequential && previous !== null ? "waiting" : "pending",
        dependsOn: sequential ? previous : null,
        orderingKey,
        batchKey: action.batchKey ?? null,
        actionSig: action.sig,
      });
      if (sequential) previous = id;
    }
  }
  return planned;
}
