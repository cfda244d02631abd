/**
 * All database access goes through this small interface, so the same SQL runs on a real
 * PostgreSQL (`pg.ts`) and on the embedded PGlite (`pglite.ts`).
 */

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  /** Runs one statement with `$1..$n` parameters. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs several statements without parameters (migrations, DDL). */
  exec(text: string): Promise<void>;
}

/** A statement with `$1..$n` parameters. */
export interface Statement {
  readonly text: string;
  readonly params: readonly unknown[];
}

/** What {@link Database.readThenWrite} writes for the rows it read, and the value it resolves to. */
export type Decide<R, T> = (
  rows: R[],
) =>
  | { readonly write?: Statement | undefined; readonly value: T }
  | Promise<{ readonly write?: Statement | undefined; readonly value: T }>;

export interface HeldLock {
  /** Resolves when the connection holding the lock is lost (the lock is gone with it). */
  readonly lost: Promise<void>;
  release(): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: "postgresql" | "pglite";
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * A transaction of one read and one write: the write that `decide` returns for the read's rows
   * (none: commit alone). On PostgreSQL it takes two round trips, `BEGIN` going with the read and
   * `COMMIT` with the write, parameters as SQL literals.
   */
  readThenWrite<R, T>(read: Statement, decide: Decide<R, T>): Promise<T>;
  /**
   * Takes a session-level advisory lock, keyed by `name`, on a connection of its own and holds it
   * until released or until that connection is lost; undefined when another session holds it.
   * Other processes can then tell this one is alive: the server frees the lock the moment the
   * process dies. (Only on PostgreSQL; PGlite runs in one process.)
   */
  holdLock?(name: string): Promise<HeldLock | undefined>;
  /** Subscribes to NOTIFY on a channel; returns the unsubscribe function. */
  listen(channel: string, onNotify: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}
