import { loadConfig } from "../config/load.js";
import type { ResolvedConfig } from "../config/types.js";
import { quoteIdent } from "../db/tables.js";
import { FraiseqlError } from "../errors.js";
import { compileCondition } from "../observers/condition.js";
import { parseCommandArgs } from "./args.js";

/** The text `fraiseql explain OBSERVER` prints: SQL ready for psql, with notes on old-image parts. */
export function explainObserver(config: ResolvedConfig, name: string): string {
  const observer = config.observers.find((o) => o.name === name);
  if (!observer) {
    throw new FraiseqlError("FQL_NOT_FOUND", `no observer named "${name}"`, {
      hint: `Observers: ${config.observers.map((o) => o.name).join(", ") || "(none)"}`,
    });
  }
  const entity = config.entities.find((e) => e.name === observer.entity);
  if (!entity)
    throw new FraiseqlError("FQL_NOT_FOUND", `observer ${name}: no entity named "${observer.entity}"`);
  const table = `${quoteIdent(entity.schema)}.${quoteIdent(entity.table)}`;
  const lines = [`-- observer ${observer.name}: ${observer.event} on ${entity.name}`];
  const parts: string[] = [];
  const notes: string[] = [];
  let exact = true;
  const conditions = [
    ...(observer.condition ? [{ label: "observer", source: observer.condition }] : []),
    ...observer.actions.flatMap((a) =>
      a.condition ? [{ label: `action ${a.index} (${a.url})`, source: a.condition }] : [],
    ),
  ];
  if (observer.condition) {
    const sql = compileCondition(observer.condition, { fields: entity.fields }).toSql({
      fields: entity.fields,
    });
    lines.push(`-- condition: ${observer.condition}`);
    parts.push(sql.sql);
    exact &&= sql.exact;
    notes.push(...sql.notes);
  } else {
    lines.push("-- no condition: every row matches");
  }
  for (const c of conditions.slice(observer.condition ? 1 : 0)) {
    const sql = compileCondition(c.source, { fields: entity.fields }).toSql({ fields: entity.fields });
    lines.push(`-- ${c.label} routes on: ${c.source}`, `--   rows it would receive: ... AND (${sql.sql})`);
    for (const n of sql.notes) lines.push(`--   ${n}`);
  }
  for (const note of notes) lines.push(`-- note: ${note}`);
  if (!exact) {
    lines.push(
      "-- the parts that compare old and new rows are TRUE below: these are the rows that could match",
    );
  }
  lines.push(`SELECT * FROM ${table}${parts.length ? ` WHERE ${parts.join(" AND ")}` : ""};`);
  return `${lines.join("\n")}\n`;
}

/** `fraiseql explain OBSERVER` */
export async function runExplain(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs("explain", args, { config: { type: "string" } });
  if (positionals.length !== 1) {
    throw new FraiseqlError("FQL_USAGE", "explain takes one observer name", {
      hint: "fraiseql explain OBSERVER",
    });
  }
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  process.stdout.write(explainObserver(config, positionals[0] as string));
  return 0;
}
