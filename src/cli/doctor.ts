import { Agent, request } from "undici";
import { openFraiseql } from "../app.js";
import { CAPTURE_TRIGGER, captureTriggerInstalled } from "../capture/triggers.js";
import { loadConfig } from "../config/load.js";
import type { EntityModel, EventKind, ObserverModel, ResolvedConfig } from "../config/types.js";
import { parseDuration } from "../config/units.js";
import type { Queryable } from "../db/driver.js";
import { loadMigrations } from "../db/migrate.js";
import { internalTables, quoteIdent } from "../db/tables.js";
import type { DlqBackend } from "../dlq/types.js";
import { FraiseqlError } from "../errors.js";
import { compileCondition } from "../observers/condition.js";
import { createRedactor } from "../redact.js";
import { parseCommandArgs } from "./args.js";

/**
 * `fraiseql doctor`: answers, per observer, the three questions of a webhook that does not fire
 * (is the observer registered and its change captured? does its condition match the data? can
 * its receiver be reached?), plus whether the database is migrated and a worker takes the queue.
 */

/** One line of the checklist: `ok` true (✓), false (✗, a problem) or undefined (information). */
export interface DoctorCheck {
  readonly ok: boolean | undefined;
  readonly text: string;
  /** One line telling how to fix a problem. */
  readonly fix?: string;
}

/** The checks of the installation, or of one observer. */
export interface DoctorSection {
  readonly title: string;
  readonly checks: readonly DoctorCheck[];
}

/** The whole answer of {@link diagnose}. */
export interface DoctorReport {
  readonly sections: readonly DoctorSection[];
  /** How many checks failed; `fraiseql doctor` exits 1 when any did. */
  readonly problems: number;
}

/** What a URL probe found. */
export interface ProbeResult {
  readonly reachable: boolean;
  /** The HTTP status of the answer, when one came. */
  readonly status?: number;
  /** Why it is unreachable (ECONNREFUSED, timeout, ...). */
  readonly error?: string;
  readonly durationMs: number;
}

/** Options of {@link diagnose}. */
export interface DoctorOptions {
  /** Check only this observer. (Default: every observer) */
  observer?: string;
  /** Time allowed to each receiver probe, ms. (Default: 3000) */
  probeTimeoutMs?: number;
  /** How far back "recent" events and deliveries go, ms. (Default: 24 h) */
  windowMs?: number;
  /** How long a due delivery or an unrouted event may wait before no worker is assumed, ms. (Default: 60000) */
  stallMs?: number;
  /** Probes a receiver URL. (Default: {@link probeUrl}, an `OPTIONS` request without payload) */
  probe?: (url: string, timeoutMs: number) => Promise<ProbeResult>;
}

/** The parts of a running instance that doctor reads. */
export interface DoctorTarget {
  readonly config: ResolvedConfig;
  readonly db: Queryable;
  readonly dlq: Pick<DlqBackend, "sizes">;
}

/** How many rows the condition checks count at most (so that doctor stays cheap on big tables). */
const ROW_SAMPLE = 1000;
/** How many recent events are evaluated against a condition at most. */
const EVENT_SAMPLE = 1000;

/**
 * Sends `OPTIONS url` (no body, no configured headers) and reports whether any HTTP answer came
 * within `timeoutMs`. Any status counts as reachable (the receiver may well refuse OPTIONS);
 * a refused connection, a DNS or TLS failure or a timeout does not.
 */
export async function probeUrl(url: string, timeoutMs: number): Promise<ProbeResult> {
  const started = performance.now();
  const agent = new Agent({
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  try {
    const res = await request(url, {
      method: "OPTIONS",
      dispatcher: agent,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body.dump().catch(() => {});
    return { reachable: true, status: res.statusCode, durationMs: performance.now() - started };
  } catch (err) {
    const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string } };
    const timedOut = e.name === "TimeoutError" || e.name === "AbortError" || /TIMEOUT/.test(e.code ?? "");
    return {
      reachable: false,
      error: timedOut
        ? `no answer within ${timeoutMs} ms`
        : (e.code ?? e.cause?.code ?? e.message ?? String(err)),
      durationMs: performance.now() - started,
    };
  } finally {
    await agent.close().catch(() => {});
  }
}

const TEMPLATE = /\{\{.*?\}\}/;

/**
 * The URL to probe for a URL template: the template up to its first placeholder (the origin
 * and the fixed part of the path), or a reason why it cannot be probed.
 */
export function probeTarget(template: string): { url: string } | { skip: string } {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(template);
  if (!m) return { skip: "the URL is a template without a fixed scheme and host" };
  if (TEMPLATE.test(m[2] ?? "")) return { skip: "the host is a {{ }} template, filled in per event" };
  const scheme = (m[1] ?? "").toLowerCase();
  if (scheme !== "http" && scheme !== "https") return { skip: `${scheme}: URLs are not probed` };
  const cut = template.search(/\{\{/);
  const fixed = cut === -1 ? template : template.slice(0, cut);
  try {
    return { url: new URL(fixed).toString() };
  } catch {
    return { skip: "the URL does not parse" };
  }
}

/** pg_trigger.tgtype bits of the row events. */
const TRIGGER_EVENT_BITS: Record<EventKind, number> = { INSERT: 4, DELETE: 8, UPDATE: 16 };

function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

function tableName(entity: EntityModel): string {
  return `${quoteIdent(entity.schema)}.${quoteIdent(entity.table)}`;
}

function shownTable(entity: EntityModel): string {
  return `${entity.schema}.${entity.table}`;
}

function humanMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${Math.round(m / 60)} h`;
}

async function tableExists(db: Queryable, qualified: string): Promise<boolean> {
  const { rows } = await db.query<{ found: boolean }>("SELECT to_regclass($1) IS NOT NULL AS found", [
    qualified,
  ]);
  return rows[0]?.found === true;
}

async function installationChecks(
  target: DoctorTarget,
  options: Required<Pick<DoctorOptions, "stallMs">>,
): Promise<{ section: DoctorSection; migrated: boolean }> {
  const { config, db } = target;
  const checks: DoctorCheck[] = [];
  const t = internalTables(config.database.schema);
  const migrations = `${t.schema}.migrations`;
  let migrated = false;
  const { rows: version } = await db.query<{ v: string }>(
    "SELECT split_part(version(), ' ', 1) || ' ' || split_part(version(), ' ', 2) AS v",
  );
  const embedded = (db as { kind?: string }).kind === "pglite" ? ", embedded PGlite" : "";
  checks.push({ ok: true, text: `database reachable (${version[0]?.v ?? "?"}${embedded})` });
  const want = Math.max(0, ...(await loadMigrations()).map((m) => m.id));
  let applied = 0;
  if (await tableExists(db, migrations)) {
    const { rows } = await db.query<{ id: number | null }>(`SELECT max(id) AS id FROM ${migrations}`);
    applied = Number(rows[0]?.id ?? 0);
  }
  if (applied > want) {
    checks.push({
      ok: false,
      text: `internal tables are at migration ${applied}, newer than this version of fraiseql knows (${want}): its other commands refuse to run (FQL_SCHEMA_NEWER)`,
      fix: "run the newer fraiseql that migrated this database",
    });
  } else if (applied === want) {
    migrated = true;
    checks.push({
      ok: true,
      text: `internal tables installed in schema ${config.database.schema} (migration ${applied})`,
    });
  } else {
    checks.push({
      ok: false,
      text:
        applied === 0
          ? `internal tables are not installed in schema ${config.database.schema}`
          : `internal tables are at migration ${applied}, this version needs ${want}`,
      fix: "run `fraiseql migrate` (or start `fraiseql serve`, which migrates first)",
    });
  }
  if (migrated) {
    const { rows } = await db.query<{
      pending: number;
      due_ms: number | null;
      unrouted: number;
      unrouted_ms: number | null;
    }>(
      `SELECT (SELECT count(*) FROM ${t.deliveries} WHERE status = 'pending')::int AS pending,
              (SELECT EXTRACT(EPOCH FROM now() - min(run_at)) * 1000 FROM ${t.deliveries}
                WHERE status = 'pending' AND run_at <= now())::float8 AS due_ms,
              (SELECT count(*) FROM ${t.events} WHERE routed_at IS NULL)::int AS unrouted,
              (SELECT EXTRACT(EPOCH FROM now() - min(created_at)) * 1000 FROM ${t.events}
                WHERE routed_at IS NULL)::float8 AS unrouted_ms`,
    );
    const q = rows[0];
    const dueMs = q?.due_ms === null || q?.due_ms === undefined ? 0 : Number(q.due_ms);
    const unroutedMs = q?.unrouted_ms === null || q?.unrouted_ms === undefined ? 0 : Number(q.unrouted_ms);
    const worker = "is a `fraiseql serve` or `fraiseql worker` running against this database?";
    if (unroutedMs > options.stallMs) {
      checks.push({
        ok: false,
        text: `${plural(q?.unrouted ?? 0, "captured change")} not routed, the oldest for ${humanMs(unroutedMs)}`,
        fix: worker,
      });
    } else if (dueMs > options.stallMs) {
      checks.push({
        ok: false,
        text: `${plural(q?.pending ?? 0, "pending delivery", "pending deliveries")}: the oldest has been due for ${humanMs(dueMs)}`,
        fix: `${worker} (a slow receiver or too low [webhooks.dispatch] concurrency also backs the queue up)`,
      });
    } else {
      checks.push({
        ok: true,
        text: `queue moving: ${plural(q?.pending ?? 0, "pending delivery", "pending deliveries")}, ${plural(q?.unrouted ?? 0, "unrouted change")}`,
      });
    }
  }
  return { section: { title: "installation", checks }, migrated };
}

async function triggerCheck(db: Queryable, entity: EntityModel, event: EventKind): Promise<DoctorCheck> {
  const fix = "run `fraiseql migrate`: it (re)installs the capture triggers";
  if (!(await captureTriggerInstalled(db, entity))) {
    return {
      ok: false,
      text: `capture trigger ${CAPTURE_TRIGGER} is missing on ${shownTable(entity)}: its row changes are not captured`,
      fix,
    };
  }
  const { rows } = await db.query<{ tgtype: number; tgenabled: string }>(
    `SELECT t.tgtype::int AS tgtype, t.tgenabled::text AS tgenabled
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgname = $1 AND n.nspname = $2 AND c.relname = $3`,
    [CAPTURE_TRIGGER, entity.schema, entity.table],
  );
  const trigger = rows[0];
  if (trigger && (trigger.tgtype & TRIGGER_EVENT_BITS[event]) === 0) {
    return {
      ok: false,
      text: `capture trigger on ${shownTable(entity)} does not fire on ${event}`,
      fix,
    };
  }
  if (trigger && trigger.tgenabled === "D") {
    return {
      ok: false,
      text: `capture trigger on ${shownTable(entity)} is disabled`,
      fix: `ALTER TABLE ${tableName(entity)} ENABLE TRIGGER ${CAPTURE_TRIGGER};`,
    };
  }
  return { ok: true, text: `${event} on ${shownTable(entity)} is captured (trigger ${CAPTURE_TRIGGER})` };
}

async function conditionChecks(
  target: DoctorTarget,
  observer: ObserverModel,
  entity: EntityModel,
  windowMs: number,
  migrated: boolean,
): Promise<DoctorCheck[]> {
  const { db, config } = target;
  const checks: DoctorCheck[] = [];
  const table = tableName(entity);
  const explain = `compare it with the data: \`fraiseql explain ${observer.name}\` prints the SQL`;
  const compiled = observer.condition
    ? compileCondition(observer.condition, { fields: entity.fields })
    : undefined;
  const { rows: total } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${table} LIMIT ${ROW_SAMPLE}) x`,
  );
  const rows = Number(total[0]?.n ?? 0);
  const shownRows = rows >= ROW_SAMPLE ? `${ROW_SAMPLE}+` : String(rows);
  if (!compiled) {
    checks.push({ ok: true, text: `no condition: every ${observer.event} on ${entity.name} matches` });
  } else if (rows === 0) {
    checks.push({
      ok: undefined,
      text: `${shownTable(entity)} is empty: the condition \`${observer.condition}\` cannot be tried on data yet`,
    });
  } else {
    const sql = compiled.toSql({ fields: entity.fields });
    try {
      const { rows: found } = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${table} WHERE ${sql.sql} LIMIT ${ROW_SAMPLE}) x`,
      );
      const n = Number(found[0]?.n ?? 0);
      const could = sql.exact ? "" : " (old-image parts taken as true)";
      if (n === 0 && observer.event === "DELETE") {
        // The rows a DELETE observer fires on are gone; the table holds those not deleted yet.
        checks.push({
          ok: undefined,
          text: `condition \`${observer.condition}\` matches none of the ${shownRows} rows of ${shownTable(entity)}${could}: deleting any of them now would not fire it`,
        });
      } else if (n === 0) {
        checks.push({
          ok: false,
          text: `condition \`${observer.condition}\` matches none of the ${shownRows} rows of ${shownTable(entity)}${could}`,
          fix: `${explain}; check the values and their case`,
        });
      } else {
        checks.push({
          ok: true,
          text: `condition \`${observer.condition}\` matches ${n >= ROW_SAMPLE ? `${ROW_SAMPLE}+` : n} of ${shownRows} rows of ${shownTable(entity)}${could}`,
        });
      }
    } catch (err) {
      checks.push({
        ok: false,
        text: `condition \`${observer.condition}\` cannot run on ${shownTable(entity)}: ${(err as Error).message}`,
        fix: "check the column types of the table against the entity's fields",
      });
    }
  }
  if (!migrated) return checks;

  const t = internalTables(config.database.schema);
  const window = humanMs(windowMs);
  const { rows: events } = await db.query<{
    old_row: Record<string, unknown> | null;
    new_row: Record<string, unknown> | null;
  }>(
    `SELECT old_row, new_row FROM ${t.events}
      WHERE entity = $1 AND op = $2 AND created_at > now() - $3 * interval '1 millisecond'
      ORDER BY id DESC LIMIT ${EVENT_SAMPLE}`,
    [entity.name, observer.event, windowMs],
  );
  if (events.length === 0) {
    checks.push({
      ok: undefined,
      text: `no ${observer.event} on ${entity.name} captured in the last ${window}`,
    });
  } else if (compiled) {
    const matched = events.filter((e) =>
      compiled.evaluate({ event: observer.event, old: e.old_row, new: e.new_row }),
    ).length;
    const shown = events.length >= EVENT_SAMPLE ? `the last ${EVENT_SAMPLE}` : String(events.length);
    checks.push(
      matched === 0
        ? {
            ok: false,
            text: `none of ${shown} ${observer.event} events on ${entity.name} of the last ${window} matched the condition`,
            fix: explain,
          }
        : {
            ok: true,
            text: `${matched} of ${shown} ${observer.event} events on ${entity.name} of the last ${window} matched`,
          },
    );
  } else {
    checks.push({
      ok: true,
      text: `${plural(events.length, `${observer.event} event`)} on ${entity.name} in the last ${window}`,
    });
  }

  const { rows: byStatus } = await db.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM ${t.deliveries}
      WHERE observer = $1 AND created_at > now() - $2 * interval '1 millisecond' GROUP BY status ORDER BY status`,
    [observer.name, windowMs],
  );
  const counts = new Map(byStatus.map((r) => [r.status, Number(r.n)]));
  const dead = counts.get("dead") ?? 0;
  const summary = byStatus.length === 0 ? "none" : byStatus.map((r) => `${r.n} ${r.status}`).join(", ");
  checks.push(
    dead > 0
      ? {
          ok: false,
          text: `deliveries of the last ${window}: ${summary}`,
          fix: `see why: \`fraiseql deliveries list --observer ${observer.name} --status dead\`, then \`fraiseql dlq replay\``,
        }
      : { ok: undefined, text: `deliveries of the last ${window}: ${summary}` },
  );
  return checks;
}

async function actionChecks(
  observer: ObserverModel,
  timeoutMs: number,
  probe: NonNullable<DoctorOptions["probe"]>,
  probes: Map<string, Promise<ProbeResult>>,
): Promise<DoctorCheck[]> {
  return Promise.all(
    observer.actions.map(async (action): Promise<DoctorCheck> => {
      const label = `action ${action.index}: ${action.method} ${action.url}`;
      const target = probeTarget(action.url);
      if ("skip" in target) return { ok: undefined, text: `${label}: not probed, ${target.skip}` };
      let pending = probes.get(target.url);
      if (!pending) {
        pending = probe(target.url, timeoutMs);
        probes.set(target.url, pending);
      }
      const result = await pending;
      if (result.reachable) {
        return {
          ok: true,
          text: `${label}: reachable (HTTP ${result.status ?? "?"} to OPTIONS in ${humanMs(result.durationMs)})`,
        };
      }
      return {
        ok: false,
        text: `${label}: unreachable (${result.error ?? "no answer"})`,
        fix: `is the receiver running and reachable from this host? try \`curl -X POST ${target.url}\``,
      };
    }),
  );
}

/**
 * Runs every check and returns the checklist; reads only (it never migrates or repairs).
 * @throws FraiseqlError FQL_NOT_FOUND when `options.observer` names no configured observer.
 */
export async function diagnose(target: DoctorTarget, options: DoctorOptions = {}): Promise<DoctorReport> {
  const { config, db } = target;
  const timeoutMs = options.probeTimeoutMs ?? 3000;
  const windowMs = options.windowMs ?? 24 * 3600 * 1000;
  const probe = options.probe ?? probeUrl;
  const observers =
    options.observer === undefined
      ? config.observers
      : config.observers.filter((o) => o.name === options.observer);
  if (options.observer !== undefined && observers.length === 0) {
    throw new FraiseqlError("FQL_NOT_FOUND", `no observer named "${options.observer}" is registered`, {
      hint: `Observers in the config: ${config.observers.map((o) => o.name).join(", ") || "(none)"}. An observer declared in TypeScript must be exported by a module listed in \`include\`.`,
    });
  }
  const installation = await installationChecks(target, { stallMs: options.stallMs ?? 60_000 });
  const sections: DoctorSection[] = [installation.section];
  let dlqSizes = new Map<string, number>();
  if (installation.migrated) {
    try {
      dlqSizes = await target.dlq.sizes();
    } catch {
      // The DLQ backend is reported by its own errors at startup; doctor goes on without sizes.
    }
  }
  if (observers.length === 0) {
    sections.push({
      title: "observers",
      checks: [
        {
          ok: false,
          text: "no observer is registered",
          fix: "declare [[observers]] in fraiseql.toml or in an `include`d module",
        },
      ],
    });
  }
  const probes = new Map<string, Promise<ProbeResult>>();
  for (const observer of observers) {
    const entity = config.entities.find((e) => e.name === observer.entity);
    const checks: DoctorCheck[] = [];
    if (!entity) {
      checks.push({
        ok: false,
        text: `entity ${observer.entity} is not declared`,
        fix: "declare it in [[entities]]",
      });
      sections.push({ title: `observer ${observer.name}`, checks });
      continue;
    }
    checks.push({
      ok: true,
      text: `registered: ${observer.event} on ${entity.name}, ${plural(observer.actions.length, "action")}, ${observer.execution}`,
    });
    const exists = await tableExists(db, tableName(entity));
    if (!exists) {
      checks.push({
        ok: false,
        text: `table ${shownTable(entity)} does not exist`,
        fix: "run `fraiseql migrate`: it creates missing entity tables",
      });
    } else {
      checks.push(await triggerCheck(db, entity, observer.event));
      checks.push(...(await conditionChecks(target, observer, entity, windowMs, installation.migrated)));
    }
    const inDlq = dlqSizes.get(observer.name) ?? 0;
    if (inDlq > 0) checks.push({ ok: undefined, text: `${plural(inDlq, "dead letter")} in the DLQ` });
    checks.push(...(await actionChecks(observer, timeoutMs, probe, probes)));
    sections.push({ title: `observer ${observer.name}`, checks });
  }
  const redact = createRedactor(config.secrets);
  const clean = sections.map((s) => ({
    title: redact.text(s.title),
    checks: s.checks.map((c) => ({
      ok: c.ok,
      text: redact.text(c.text),
      ...(c.fix === undefined ? {} : { fix: redact.text(c.fix) }),
    })),
  }));
  const problems = clean.reduce((n, s) => n + s.checks.filter((c) => c.ok === false).length, 0);
  return { sections: clean, problems };
}

/** The checklist as text: ✓ passed, ✗ problem (with its fix below), • information. */
export function formatDoctorReport(report: DoctorReport, options: { color?: boolean } = {}): string {
  const paint = (code: string, text: string) => (options.color ? `\u001b[${code}m${text}\u001b[0m` : text);
  const lines: string[] = [];
  for (const section of report.sections) {
    lines.push(section.title);
    for (const c of section.checks) {
      const mark = c.ok === true ? paint("32", "✓") : c.ok === false ? paint("31", "✗") : paint("2", "•");
      lines.push(`  ${mark} ${c.text}`);
      if (c.ok === false && c.fix) lines.push(`      fix: ${c.fix}`);
    }
    lines.push("");
  }
  lines.push(report.problems === 0 ? "no problem found" : `${plural(report.problems, "problem")} found`);
  return `${lines.join("\n")}\n`;
}

/** `fraiseql doctor [OBSERVER] [--timeout 3s] [--window 24h]`: exit 0 when every check passes, 1 otherwise. */
export async function runDoctor(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("doctor", args, {
    config: { type: "string" },
    timeout: { type: "string" },
    window: { type: "string" },
  });
  if (positionals.length > 1) {
    throw new FraiseqlError("FQL_USAGE", "doctor takes at most one observer name", {
      hint: "fraiseql doctor [OBSERVER] [--config PATH]",
    });
  }
  const duration = (value: string | undefined, key: string): number | undefined => {
    if (value === undefined) return undefined;
    try {
      return parseDuration(value);
    } catch (err) {
      throw new FraiseqlError("FQL_USAGE", `${key}: "${value}" is not a duration (3s, 24h)`, { cause: err });
    }
  };
  const timeout = duration(values.timeout, "--timeout");
  const window = duration(values.window, "--window");
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  const app = await openFraiseql(config);
  try {
    const report = await diagnose(app, {
      ...(positionals[0] === undefined ? {} : { observer: positionals[0] }),
      ...(timeout === undefined ? {} : { probeTimeoutMs: timeout }),
      ...(window === undefined ? {} : { windowMs: window }),
    });
    process.stdout.write(formatDoctorReport(report, { color: process.stdout.isTTY === true }));
    return report.problems === 0 ? 0 : 1;
  } finally {
    await app.close();
  }
}
