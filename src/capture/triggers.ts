import type { EntityModel, EventKind, ObserverModel } from "../config/types.js";
import type { Queryable } from "../db/driver.js";

/** Name of the capture trigger on every observed table. */
export const CAPTURE_TRIGGER = "fraiseql_capture";

function q(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function lit(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** Which row events of each entity some observer listens to. */
export function observedEvents(
  entities: readonly EntityModel[],
  observers: readonly ObserverModel[],
): Map<EntityModel, Set<EventKind>> {
  const result = new Map<EntityModel, Set<EventKind>>();
  for (const entity of entities) {
    const events = new Set(observers.filter((o) => o.entity === entity.name).map((o) => o.event));
    result.set(entity, events);
  }
  return result;
}

/**
 * Installs (or replaces) the AFTER ROW capture trigger on each observed table, for exactly the
 * events observed, and removes it from tables no observer watches any more. Runs inside the
 * migration transaction.
 */
export async function installCaptureTriggers(
  tx: Queryable,
  internalSchema: string,
  entities: readonly EntityModel[],
  observers: readonly ObserverModel[],
): Promise<void> {
  for (const [entity, events] of observedEvents(entities, observers)) {
    const table = `${q(entity.schema)}.${q(entity.table)}`;
    let sql = `DROP TRIGGER IF EXISTS ${CAPTURE_TRIGGER} ON ${table};`;
    if (events.size > 0) {
      const ops = (["INSERT", "UPDATE", "DELETE"] as const).filter((e) => events.has(e)).join(" OR ");
      sql += `CREATE TRIGGER ${CAPTURE_TRIGGER} AFTER ${ops} ON ${table} FOR EACH ROW EXECUTE FUNCTION ${q(internalSchema)}.capture(${lit(entity.name)});`;
    }
    await tx.exec(sql);
  }
}

/** Whether the capture trigger is installed on an entity's table (used by doctor and tests). */
export async function captureTriggerInstalled(db: Queryable, entity: EntityModel): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgname = $1 AND n.nspname = $2 AND c.relname = $3`,
    [CAPTURE_TRIGGER, entity.schema, entity.table],
  );
  return rows.length > 0;
}
