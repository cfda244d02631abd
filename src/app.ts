import { installCaptureTriggers } from "./capture/triggers.js";
import type { ResolvedConfig } from "./config/types.js";
import type { Database } from "./db/driver.js";
import { openDatabase } from "./db/index.js";
import { migrate } from "./db/migrate.js";
import { channels, Dispatcher, type DispatcherOptions } from "./delivery/dispatcher.js";
import type { HttpSender } from "./delivery/http.js";
import { openDlq } from "./dlq/index.js";
import type { DlqBackend } from "./dlq/types.js";
import { ensureEntityTables } from "./entities/ddl.js";
import { isFraiseqlError } from "./errors.js";
import { compileObservers, type ObserverRegistry } from "./observers/runtime.js";

/** A running instance: database, DLQ, compiled observers and (once started) the dispatcher. */
export interface Fraiseql {
  readonly config: ResolvedConfig;
  readonly db: Database;
  readonly dlq: DlqBackend;
  readonly registry: ObserverRegistry;
  readonly dispatcher: Dispatcher;
  /** Applies migrations, creates entity tables and installs capture triggers (idempotent). */
  migrate(): Promise<string[]>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Use this database instead of opening the configured one (it is not closed by `close`). */
  db?: Database;
  sender?: HttpSender;
  workerId?: string;
  random?: () => number;
}

/** Applies the internal migrations, entity tables, capture triggers and the DLQ's storage in one transaction. */
export function migrateAll(db: Database, config: ResolvedConfig, dlq: DlqBackend): Promise<string[]> {
  return migrate(db, {
    schema: config.database.schema,
    async after(tx) {
      await ensureEntityTables(tx, config.entities);
      await installCaptureTriggers(tx, config.database.schema, config.entities, config.observers);
      // A NATS server that is down must not stop delivery: its stream and bucket are also made
      // on first use, and dead letters wait on their delivery rows until it answers.
      if (dlq.name === "nats") await dlq.ensure(tx).catch(reportUnreachableDlq);
      else await dlq.ensure(tx);
    },
  });
}

function reportUnreachableDlq(error: unknown): void {
  if (!isFraiseqlError(error) || error.code !== "FQL_DLQ_WRITE") throw error;
  if (channels.error.hasSubscribers) channels.error.publish({ error });
}

/** Opens the configured database and builds the pipeline (nothing runs until `dispatcher.start()`). */
export async function openFraiseql(config: ResolvedConfig, options: OpenOptions = {}): Promise<Fraiseql> {
  const registry = compileObservers(config);
  const db =
    options.db ?? (await openDatabase({ url: config.database.url, dataDir: config.database.dataDir }));
  const ownsDb = options.db === undefined;
  let dlq: DlqBackend;
  try {
    dlq = await openDlq(db, config.webhooks.dlq);
  } catch (err) {
    if (ownsDb) await db.close();
    throw err;
  }
  const dispatcherOptions: DispatcherOptions = {
    db,
    config,
    registry,
    dlq,
    ...(options.sender ? { sender: options.sender } : {}),
    ...(options.workerId ? { workerId: options.workerId } : {}),
    ...(options.random ? { random: options.random } : {}),
  };
  const dispatcher = new Dispatcher(dispatcherOptions);
  return {
    config,
    db,
    dlq,
    registry,
    dispatcher,
    migrate: () => migrateAll(db, config, dlq),
    async close() {
      await dispatcher.stop();
      await dlq.close();
      if (ownsDb) await db.close();
    },
  };
}
