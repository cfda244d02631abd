/** Fully qualified, quoted names of the internal tables in the configured schema. */
export interface InternalTables {
  readonly schema: string;
  readonly events: string;
  readonly deliveries: string;
  readonly attempts: string;
  readonly workers: string;
  /** The events' id sequence: its last value is the outbox's position (see `WriteOptions`). */
  readonly eventIds: string;
  /** `event_deliveries(event_id, captured)`: an event's deliveries, by its id and time (migration 005). */
  readonly eventDeliveries: string;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function internalTables(schema: string): InternalTables {
  const s = quoteIdent(schema);
  return Object.freeze({
    schema: s,
    events: `${s}.events`,
    deliveries: `${s}.deliveries`,
    attempts: `${s}.delivery_attempts`,
    workers: `${s}.workers`,
    eventIds: `${s}.events_id_seq`,
    eventDeliveries: `${s}.event_deliveries`,
  });
}
