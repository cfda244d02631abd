import { openFraiseql } from "../app.js";
import { loadConfig } from "../config/load.js";
import type { ResolvedConfig } from "../config/types.js";
import type { Queryable } from "../db/driver.js";
import { internalTables } from "../db/tables.js";
import { FraiseqlError } from "../errors.js";
import { actionSig, pickAction } from "../observers/runtime.js";
import { createRedactor, type Redactor } from "../redact.js";
import { limitArg, parseCommandArgs, timeArg, withinLimit } from "./args.js";
import { table } from "./table.js";

/**
 * `--status` of `fraiseql deliveries list`:
 * - `succeeded`: delivered (a 2xx answer);
 * - `dead`: dead-lettered;
 * - `failed`: dead-lettered, or waiting for a retry after a failed attempt;
 * - `pending`: not finished (queued, being sent, or waiting behind an earlier action).
 */
export const DELIVERY_STATUS_FILTERS = ["failed", "succeeded", "dead", "pending"] as const;

/** One of {@link DELIVERY_STATUS_FILTERS}. */
export type DeliveryStatusFilter = (typeof DELIVERY_STATUS_FILTERS)[number];

/** Filter of {@link listDeliveries}. */
export interface DeliveryListFilter {
  observer?: string;
  status?: DeliveryStatusFilter;
  /** Only deliveries created at or after this time. (Default: no limit) */
  since?: Date;
  /** (Default: 50) */
  limit?: number;
}

/** One delivery (one event x one action) as the history shows it. */
export interface DeliverySummary {
  id: string;
  observer: string;
  /** 0-based index of the action in the observer's `actions`. */
  action: number;
  /** pending | running | waiting | succeeded | dead */
  status: string;
  /** Attempts made so far (replays included). */
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  /** Why it was dead-lettered (dead deliveries only). */
  reason: string | null;
  eventId: string;
  entity: string | null;
  event: string | null;
  /** ISO 8601 */
  createdAt: string;
  /** ISO 8601; when the next attempt is due (pending deliveries). */
  runAt: string;
  /** ISO 8601; when it succeeded or was dead-lettered. */
  finishedAt: string | null;
  replayedAt: string | null;
  /**
   * The batch it was last sent in, for a batched action: the id sent as `X-FraiseQL-Delivery`,
   * and the `delivery_id` of the batch's DLQ entry.
   */
  batchId: string | null;
}

/** One HTTP attempt of a delivery. */
export interface AttemptEntry {
  attempt: number;
  /** ISO 8601 */
  startedAt: string;
  durationMs: number;
  /** HTTP status, null when no answer came (timeout, connection error, request never sent). */
  status: number | null;
  /** success | http | timeout | connection | invalid_request */
  outcome: string;
  error: string | null;
  /** First bytes of the response body. */
  response: string | null;
}

/** A delivery with its whole attempt timeline. */
export interface DeliveryDetail extends DeliverySummary {
  /** The action's method and URL template, as configured (secrets redacted). */
  request: { method: string; url: string } | null;
  /** Every attempt, oldest first. */
  timeline: AttemptEntry[];
  /** The deliveries of its batch (itself included), in event order; null when not batched. */
  batchMembers: string[] | null;
}

interface DeliveryRow {
  id: string;
  observer: string;
  action_index: number;
  status: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  reason: string | null;
  event_id: string;
  entity: string | null;
  op: string | null;
  created_at: Date | string;
  run_at: Date | string;
  finished_at: Date | string | null;
  replayed_at: Date | string | null;
  batch_id: string | null;
  action_sig: string | null;
}

function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

function isoOrNull(value: Date | string | null): string | null {
  return value === null ? null : iso(value);
}

function toSummary(row: DeliveryRow): DeliverySummary {
  return {
    id: row.id,
    observer: row.observer,
    action: row.action_index,
    status: row.status,
    attempts: row.attempts,
    lastStatus: row.last_status,
    lastError: row.last_error,
    reason: row.reason,
    eventId: String(row.event_id),
    entity: row.entity,
    event: row.op,
    createdAt: iso(row.created_at),
    runAt: iso(row.run_at),
    finishedAt: isoOrNull(row.finished_at),
    replayedAt: isoOrNull(row.replayed_at),
    batchId: row.batch_id,
  };
}

const STATUS_SQL: Record<DeliveryStatusFilter, string> = {
  succeeded: "d.status = 'succeeded'",
  dead: "d.status = 'dead'",
  pending: "d.status IN ('pending', 'running', 'waiting')",
  failed:
    "(d.status = 'dead' OR (d.status IN ('pending', 'running') AND d.attempts > 0 AND (d.last_error IS NOT NULL OR d.last_status >= 300)))",
};

const SELECT_DELIVERY = `SELECT d.id::text AS id, d.observer, d.action_index, d.status, d.attempts, d.last_status,
        d.last_error, d.reason, d.event_id::text AS event_id, e.entity, e.op, d.created_at, d.run_at,
        d.finished_at, d.replayed_at, d.batch_id::text AS batch_id, d.action_sig`;

/** Deliveries, newest first, from the delivery history (`[database] schema`). */
export async function listDeliveries(
  db: Queryable,
  schema: string,
  filter: DeliveryListFilter = {},
): Promise<DeliverySummary[]> {
  const t = internalTables(schema);
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.observer !== undefined) {
    params.push(filter.observer);
    where.push(`d.observer = $${params.length}`);
  }
  if (filter.since !== undefined) {
    params.push(filter.since.toISOString());
    where.push(`d.created_at >= $${params.length}::timestamptz`);
  }
  if (filter.status !== undefined) where.push(STATUS_SQL[filter.status]);
  params.push(filter.limit ?? 50);
  const { rows } = await db.query<DeliveryRow>(
    `${SELECT_DELIVERY}
       FROM ${t.deliveries} d LEFT JOIN ${t.events} e ON e.id = d.event_id
      ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY d.created_at DESC, d.id
      LIMIT $${params.length}`,
    params,
  );
  return rows.map(toSummary);
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * One delivery with its attempts, by id or by an unambiguous start or end of it (8 characters or
 * more, as `X-FraiseQL-Delivery` shows it). Ids begin with their event's time, so deliveries of
 * one moment share their first characters and differ in their last. Undefined when none matches.
 * @throws FraiseqlError FQL_USAGE for a part that is too short or matches several deliveries.
 */
export async function getDelivery(
  db: Queryable,
  config: Pick<ResolvedConfig, "database" | "observers" | "secrets">,
  id: string,
): Promise<DeliveryDetail | undefined> {
  const t = internalTables(config.database.schema);
  const wanted = id.trim().toLowerCase();
  let rows: DeliveryRow[];
  if (UUID_RE.test(wanted)) {
    ({ rows } = await db.query<DeliveryRow>(
      `${SELECT_DELIVERY} FROM ${t.deliveries} d LEFT JOIN ${t.events} e ON e.id = d.event_id WHERE d.id = $1::uuid`,
      [wanted],
    ));
    // A batch's id (its X-FraiseQL-Delivery, its DLQ entry's delivery_id): its first delivery.
    if (rows.length === 0) {
      ({ rows } = await db.query<DeliveryRow>(
        `${SELECT_DELIVERY} FROM ${t.deliveries} d LEFT JOIN ${t.events} e ON e.id = d.event_id
          WHERE d.batch_id = $1::uuid ORDER BY d.event_id LIMIT 1`,
        [wanted],
      ));
    }
  } else {
    if (!/^[0-9a-f-]{8,36}$/.test(wanted)) {
      throw new FraiseqlError("FQL_USAGE", `"${id}" is not a delivery id`, {
        hint: "Give the id from `fraiseql deliveries list` or the X-FraiseQL-Delivery header (8 characters or more).",
      });
    }
    ({ rows } = await db.query<DeliveryRow>(
      `${SELECT_DELIVERY} FROM ${t.deliveries} d LEFT JOIN ${t.events} e ON e.id = d.event_id
        WHERE d.id::text LIKE $1 OR d.id::text LIKE $2 ORDER BY d.created_at DESC LIMIT 5`,
      [`${wanted}%`, `%${wanted}`],
    ));
    if (rows.length > 1) {
      throw new FraiseqlError("FQL_USAGE", `"${id}" matches several deliveries`, {
        hint: `Give more characters, or the id's last 12 (they tell deliveries of one moment apart): ${rows.map((r) => r.id).join(", ")}`,
      });
    }
  }
  const row = rows[0];
  if (!row) return undefined;
  const { rows: attempts } = await db.query<{
    attempt: number;
    started_at: Date | string;
    duration_ms: number;
    status: number | null;
    outcome: string;
    error: string | null;
    response_excerpt: string | null;
  }>(
    `SELECT attempt, started_at, duration_ms, status, outcome, error, response_excerpt
       FROM ${t.attempts} WHERE delivery_id = $1::uuid ORDER BY attempt`,
    [row.id],
  );
  const members =
    row.batch_id === null
      ? null
      : (
          await db.query<{ id: string }>(
            `SELECT id::text AS id FROM ${t.deliveries} WHERE batch_id = $1::uuid ORDER BY event_id`,
            [row.batch_id],
          )
        ).rows.map((r) => r.id);
  const actions = config.observers.find((o) => o.name === row.observer)?.actions ?? [];
  const action = pickAction(actions, row.action_index, row.action_sig, (a) =>
    actionSig(a.method, a.url, actions.length),
  );
  const redact = createRedactor(config.secrets);
  return {
    ...toSummary(row),
    request: action ? { method: action.method, url: redact.text(action.url) } : null,
    timeline: attempts.map((a) => ({
      attempt: a.attempt,
      startedAt: iso(a.started_at),
      durationMs: Number(a.duration_ms),
      status: a.status,
      outcome: a.outcome,
      error: a.error,
      response: a.response_excerpt,
    })),
    batchMembers: members,
  };
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** A readable status: `retrying` for a pending delivery whose last attempt failed. */
function displayStatus(d: DeliverySummary): string {
  if (d.status === "pending" && d.attempts > 0 && (d.lastError !== null || (d.lastStatus ?? 0) >= 300)) {
    return "retrying";
  }
  return d.status;
}

function seconds(iso: string): string {
  return iso.replace(/\.\d{3}Z$/, "Z");
}

/** The text of `fraiseql deliveries list`. */
export function formatDeliveryList(deliveries: readonly DeliverySummary[], redact: Redactor): string {
  if (deliveries.length === 0) return "no deliveries\n";
  const rows = [
    ["ID", "CREATED", "OBSERVER", "ACTION", "EVENT", "STATUS", "ATTEMPTS", "LAST", "REASON / ERROR"],
    ...deliveries.map((d) => [
      d.id,
      seconds(d.createdAt),
      d.observer,
      String(d.action),
      d.entity === null ? `#${d.eventId}` : `${d.entity} ${d.event} #${d.eventId}`,
      displayStatus(d),
      String(d.attempts),
      d.lastStatus === null ? "-" : String(d.lastStatus),
      redact.text(oneLine([d.reason, d.lastError].filter((x) => x !== null).join(": "), 60)) || "-",
    ]),
  ];
  return `${table(rows)}\n`;
}

function describeAttemptStatus(a: AttemptEntry): string {
  if (a.status !== null) return String(a.status);
  return a.outcome;
}

/** The text of `fraiseql deliveries show ID`: the delivery, then its attempt timeline. */
export function formatDeliveryDetail(d: DeliveryDetail, redact: Redactor): string {
  const finished =
    d.status === "succeeded"
      ? `succeeded after ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`
      : d.status === "dead"
        ? `dead-lettered after ${d.attempts} attempt${d.attempts === 1 ? "" : "s"} (${d.reason ?? "unknown"})`
        : `${displayStatus(d)}, ${d.attempts} attempt${d.attempts === 1 ? "" : "s"} so far, next at ${seconds(d.runAt)}`;
  const lines = [
    `delivery  ${d.id}`,
    `observer  ${d.observer}, action ${d.action}${d.request ? `: ${d.request.method} ${d.request.url}` : ""}`,
    `event     #${d.eventId}${d.entity === null ? " (pruned)" : ` ${d.event} on ${d.entity}`}`,
    `status    ${finished}`,
    `created   ${d.createdAt}`,
  ];
  if (d.finishedAt) lines.push(`finished  ${d.finishedAt}`);
  if (d.replayedAt) lines.push(`replayed  ${d.replayedAt}`);
  if (d.batchId !== null) {
    const n = d.batchMembers?.length ?? 1;
    lines.push(
      `batch     ${d.batchId}: ${n} deliver${n === 1 ? "y" : "ies"} sent as one request, under this id`,
    );
  }
  if (d.status === "dead") lines.push(`dlq       fraiseql dlq list --observer ${d.observer}`);
  lines.push("", "attempts:");
  if (d.timeline.length === 0) {
    lines.push("  none recorded");
  } else {
    const rows = [
      ["#", "STARTED", "STATUS", "DURATION", "ERROR"],
      ...d.timeline.map((a) => [
        String(a.attempt),
        a.startedAt,
        describeAttemptStatus(a),
        `${a.durationMs < 10 ? a.durationMs.toFixed(1) : Math.round(a.durationMs)} ms`,
        a.error === null ? "-" : oneLine(a.error, 80),
      ]),
    ];
    const rendered = table(rows).split("\n");
    lines.push(`  ${rendered[0]}`);
    d.timeline.forEach((a, i) => {
      lines.push(`  ${rendered[i + 1]}`);
      if (a.response !== null && a.response !== "") {
        lines.push(`     response: ${JSON.stringify(oneLine(a.response, 200))}`);
      }
    });
  }
  return `${redact.text(lines.join("\n"))}\n`;
}

function statusArg(value: string | undefined): DeliveryStatusFilter | undefined {
  if (value === undefined) return undefined;
  if ((DELIVERY_STATUS_FILTERS as readonly string[]).includes(value)) return value as DeliveryStatusFilter;
  throw new FraiseqlError("FQL_USAGE", `--status: "${value}" is not a delivery status`, {
    hint: `Use one of: ${DELIVERY_STATUS_FILTERS.join(", ")}.`,
  });
}

/** `fraiseql deliveries list|show`: the delivery history. */
export async function runDeliveries(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== "list" && sub !== "show") {
    throw new FraiseqlError("FQL_USAGE", `unknown deliveries command "${sub ?? ""}"`, {
      hint: "Use: fraiseql deliveries list [--observer NAME] [--status failed|succeeded|dead|pending] [--since 24h] [--json] | show ID [--json]",
    });
  }
  const { values, positionals } = parseCommandArgs(`deliveries ${sub}`, rest, {
    config: { type: "string" },
    json: { type: "boolean" },
    observer: { type: "string" },
    status: { type: "string" },
    since: { type: "string" },
    limit: { type: "string" },
  });
  const status = statusArg(values.status);
  const since = timeArg(values.since, "--since");
  const limit = limitArg(values.limit, 50);
  if (sub === "show" && positionals.length !== 1) {
    throw new FraiseqlError("FQL_USAGE", "deliveries show takes one delivery id", {
      hint: "fraiseql deliveries show ID [--json]",
    });
  }
  if (sub === "list" && positionals.length > 0) {
    throw new FraiseqlError("FQL_USAGE", `deliveries list takes no argument (got "${positionals[0]}")`, {
      hint: "Filter with --observer NAME, --status STATUS, --since 24h.",
    });
  }
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  const redact = createRedactor(config.secrets);
  const app = await openFraiseql(config);
  try {
    await app.migrate();
    if (sub === "list") {
      const deliveries = withinLimit(
        await listDeliveries(app.db, config.database.schema, {
          ...(values.observer === undefined ? {} : { observer: values.observer }),
          ...(status === undefined ? {} : { status }),
          ...(since === undefined ? {} : { since }),
          limit: limit + 1,
        }),
        limit,
        "deliveries",
      );
      process.stdout.write(
        values.json
          ? `${redact.text(JSON.stringify(deliveries, null, 2))}\n`
          : formatDeliveryList(deliveries, redact),
      );
      return 0;
    }
    const id = positionals[0] as string;
    const detail = await getDelivery(app.db, config, id);
    if (!detail) {
      throw new FraiseqlError("FQL_NOT_FOUND", `no delivery with id "${id}"`, {
        hint: "Deliveries are kept for [database] retention (default 7d); list them with fraiseql deliveries list.",
      });
    }
    if (values.json) {
      process.stdout.write(`${redact.text(JSON.stringify(detail, null, 2))}\n`);
    } else {
      process.stdout.write(formatDeliveryDetail(detail, redact));
    }
    return 0;
  } finally {
    await app.close();
  }
}
