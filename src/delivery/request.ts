import type { CapturedEvent } from "../capture/outbox.js";
import type { SigningConfig } from "../config/types.js";
import type { RuntimeAction, RuntimeObserver } from "../observers/runtime.js";
import type { TemplateContext } from "../observers/template.js";
import { encryptBody } from "./encryption.js";
import { signatureHeaders } from "./signing.js";

/** Everything needed to send one attempt, rendered from an event and its action. */
export interface RenderedRequest {
  readonly url: string;
  readonly method: string;
  /** Headers as configured and rendered, without the per-attempt ones. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body as JSON, before encryption (kept for the DLQ). */
  readonly payload: unknown;
  /** The exact bytes sent (encrypted where configured). */
  readonly body: string;
}

export class InvalidRequest extends Error {
  override readonly name = "InvalidRequest";
}

export function templateContext(event: CapturedEvent, observer: string): TemplateContext {
  return {
    event: event.op,
    old: event.old,
    new: event.new,
    entity: event.entity,
    observer,
    eventId: event.id,
    timestamp: event.timestamp,
  };
}

/** The default body when an action has none: the event envelope (SPEC §5.2). */
export function eventEnvelope(event: CapturedEvent, observer: string): Record<string, unknown> {
  let changed: readonly string[] = event.changed;
  if (event.op === "INSERT") changed = Object.keys(event.new ?? {});
  else if (event.op === "DELETE") changed = Object.keys(event.old ?? {});
  return {
    id: event.id,
    observer,
    entity: event.entity,
    event: event.op,
    timestamp: event.timestamp,
    data: { old: event.old, new: event.new },
    changed,
  };
}

const CRLF = /[\r\n]/;

/**
 * Renders url, headers and body of a delivery. Throws {@link InvalidRequest} when the result
 * must never be sent (a header value with CR/LF, a URL that is not http(s)).
 */
/** The action's URL rendered for one event, unchecked (what a dead letter records when the rest of the request could not be built). */
export function renderUrl(event: CapturedEvent, observer: RuntimeObserver, action: RuntimeAction): string {
  return action.url.render(templateContext(event, observer.model.name));
}

export function renderRequest(
  event: CapturedEvent,
  observer: RuntimeObserver,
  action: RuntimeAction,
): RenderedRequest {
  const ctx = templateContext(event, observer.model.name);
  const url = action.url.render(ctx);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidRequest(`rendered URL is not valid: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new InvalidRequest(`rendered URL must be http or https, got ${parsed.protocol}`);
  }
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  for (const [name, template] of action.headers) {
    const value = template.render(ctx);
    if (CRLF.test(value)) throw new InvalidRequest(`header ${name} would contain CR or LF after rendering`);
    headers[name] = value;
  }
  const payload =
    action.body === undefined ? eventEnvelope(event, observer.model.name) : action.body.render(ctx);
  return finish(url, headers, payload, action);
}

function finish(
  url: string,
  headers: Record<string, string>,
  payload: unknown,
  action: RuntimeAction,
): RenderedRequest {
  const enc = action.model.encryption;
  const sent = enc?.enabled ? encryptBody(payload, enc.key, enc.fields) : payload;
  return { url, method: action.model.method, headers, payload, body: JSON.stringify(sent) };
}

/**
 * Renders one request for a batch of events of one action: url and headers from the first
 * event, the body from the batch template (SPEC §5.2), or without one
 * `{"count", "timestamp", "events": [<event envelope>, ...]}`.
 */
export function renderBatchRequest(
  events: readonly CapturedEvent[],
  observer: RuntimeObserver,
  action: RuntimeAction,
  sendTime: string,
): RenderedRequest {
  const first = events[0];
  if (!first) throw new InvalidRequest("a batch needs at least one event");
  const { url, headers } = renderRequest(first, observer, action);
  const name = observer.model.name;
  const payload = action.batchBody
    ? action.batchBody.render(
        events.map((e) => templateContext(e, name)),
        sendTime,
      )
    : { count: events.length, timestamp: sendTime, events: events.map((e) => eventEnvelope(e, name)) };
  return finish(url, { ...headers }, payload, action);
}

/** Adds the per-attempt headers: delivery id, attempt number and signature. */
export function attemptHeaders(
  request: RenderedRequest,
  deliveryId: string,
  attempt: number,
  signing: SigningConfig,
): Record<string, string> {
  const headers: Record<string, string> = {
    ...request.headers,
    "X-FraiseQL-Delivery": deliveryId,
    "X-FraiseQL-Attempt": String(attempt),
  };
  if (signing.enabled && signing.secrets.length > 0) {
    Object.assign(
      headers,
      signatureHeaders(request.body, {
        scheme: signing.scheme,
        secrets: signing.secrets,
        header: signing.header,
        timestampHeader: signing.timestampHeader,
        deliveryId,
      }),
    );
  }
  return headers;
}
