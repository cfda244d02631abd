import { randomBytes, randomUUID } from "node:crypto";
import diagnostics from "node:diagnostics_channel";
import { hostname } from "node:os";
import {
  type CapturedEvent,
  capturedEvent,
  type EventRow,
  eventColumnsSql,
  toCapturedEvent,
  unroutedEventsStatement,
} from "../capture/outbox.js";
import type { ResolvedConfig } from "../config/types.js";
import type { Database, HeldLock, Queryable, Statement } from "../db/driver.js";
import { wakeChannel } from "../db/migrate.js";
import { type InternalTables, internalTables } from "../db/tables.js";
import type { DeadLetter, DlqBackend } from "../dlq/types.js";
import {
  actionOf,
  type ObserverRegistry,
  type PlannedDelivery,
  planDeliveries,
  sigHash,
} from "../observers/runtime.js";
import { createRedactor, type Redactor } from "../redact.js";
import { hostIsTemplated } from "./address-policy.js";
import {
  createUndiciSender,
  type HttpResult,
  type HttpSender,
  invalidRequest,
  senderOptionsFromConfig,
} from "./http.js";
import { RateLimiter } from "./rate-limit.js";
import {
  attemptHeaders,
  InvalidRequest,
  type RenderedRequest,
  renderBatchRequest,
  renderRequest,
  renderUrl,
} from "./request.js";
import { pruneOnce } from "./retention.js";
import { type AttemptOutcome, decideRetry, type RetryDecision } from "./retry.js";

/** How often a process sweeps held dead letters, prunes old rows and enforces DLQ limits, ms. */
const MAINTENANCE_INTERVAL = 5_000;
/**
 * How long after it was routed a delivery whose observer or action this process's config does not
 * have is left to other processes (a rolling deploy: a newer config may have it) before it is
 * dead-lettered as not configured any more. The claim does not take it before then; one taken
 * anyway (by its index, routed before signatures) is given back, due again after
 * UNKNOWN_ACTION_RETRY_MS.
 */
const UNKNOWN_ACTION_GRACE_MS = 120_000;
const UNKNOWN_ACTION_RETRY_MS = 5_000;
/** DLQ retention and size are enforced less often: a NATS or file backend reads every entry to do it. */
const DLQ_LIMITS_INTERVAL = 60_000;
/** A rate-limited request waits in memory up to this long; a longer wait goes back to the queue. */
const MAX_IN_MEMORY_WAIT = 1_000;
/** How long the loop waits after an attempt finished before it looks for more work, ms. */
const WAKE_COALESCE_MS = 2;
/** After its last work, the loop keeps looking every IDLE_POLL_MS for IDLE_SPIN_MS before it sleeps. */
const IDLE_SPIN_MS = 100;
const IDLE_POLL_MS = 2;
/** Without a backlog or a claim asked for, the loop looks for queued deliveries this often, ms (other processes' retries and replays). */
const CLAIM_INTERVAL_MS = 100;
/** Dead processes (and expired leases) are looked for at least this often, ms. */
const RECLAIM_INTERVAL_MS = 1_000;

/**
 * Diagnostics channels: the dispatcher publishes here and never imports a metrics or logging
 * library; `metrics/` and the logger subscribe.
 */
export const channels = {
  /** `{ delivery, attempt, result }` after each HTTP attempt. */
  attempt: diagnostics.channel("fraiseql:delivery:attempt"),
  /** `{ delivery, decision }` when an attempt's outcome is decided (succeeded, retry, dead). */
  settled: diagnostics.channel("fraiseql:delivery:settled"),
  /** `{ events, deliveries }` after a batch of events was routed to observers. */
  routed: diagnostics.channel("fraiseql:events:routed"),
  /** `{ error }` when a dispatcher loop iteration failed (the loop goes on). */
  error: diagnostics.channel("fraiseql:dispatcher:error"),
};

/** A delivery claimed by this process, with what is needed to send it. */
export interface ClaimedDelivery {
  readonly id: string;
  readonly eventId: string;
  readonly observer: string;
  readonly actionIndex: number;
  /** Its action's signature when it was routed (none for rows routed before migration 006). */
  readonly actionSig?: string | null | undefined;
  /**
   * performance.now() when the statement that leased it was sent: a process stalled while that
   * statement ran must not take its result for fresh.
   */
  readonly leasedAt?: number | undefined;
  /** This attempt's number, 1-based, counted over the delivery's whole life (replays included). */
  readonly attempt: number;
  /** Attempts made before the last replay; `max_attempts` counts from here. */
  readonly attemptBase: number;
  /** The delivery was replayed from the DLQ: its success removes the DLQ entry. */
  readonly replayed: boolean;
  readonly event: CapturedEvent;
  /**
   * Set when the attempt was started while the routing write that creates the delivery was still
   * committing: resolves true once it committed, false if it failed. The attempt writes nothing
   * before then, and drops its outcome on false (the event stays unrouted and is routed again,
   * to the same delivery id).
   */
  readonly routed?: Promise<boolean> | undefined;
}

export interface AttemptRecord {
  readonly delivery: ClaimedDelivery;
  readonly result: HttpResult;
  readonly decision: RetryDecision;
  readonly request: RenderedRequest | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  readonly startedAt: Date;
  /** `Date.now()` when the outcome was decided: a retry's delay counts from here, not from its settle. */
  readonly decidedAt: number;
  /** Set when the attempt sent a batch: its id (the `X-FraiseQL-Delivery` of the request). */
  readonly batchId?: string | undefined;
}

export interface DispatcherOptions {
  readonly db: Database;
  readonly config: ResolvedConfig;
  readonly registry: ObserverRegistry;
  readonly dlq: DlqBackend;
  /** (Default: an undici Pool per origin) */
  readonly sender?: HttpSender;
  /** Identifies this process in leases. (Default: host:pid:random) */
  readonly workerId?: string;
  /** Events routed per transaction. (Default: 500) */
  readonly routeBatch?: number;
  /** Source of randomness for jitter. (Default: Math.random) */
  readonly random?: () => number;
}

/** What one routing pass decided. */
interface RoutePlan {
  readonly events: number;
  readonly entities: Record<string, number>;
  planned: PlannedDelivery[];
  readonly started: ClaimedDelivery[];
  queued: boolean;
}

/**
 * A dead letter and the delivery row that holds it until a backend outside the database has it
 * (for a batch, the member that stands for it: the letter's `delivery_id` is the batch id).
 */
interface HeldLetter {
  readonly row: string;
  readonly letter: DeadLetter;
}

interface Settlement {
  readonly record: AttemptRecord;
}

/** What is left of a retry's delay, which counts from the attempt's outcome (the settle writing it comes later). */
function retryDelayLeft(record: AttemptRecord): number {
  if (record.decision.action !== "retry") return 0;
  return Math.max(0, record.decision.delayMs - (Date.now() - record.decidedAt));
}

function sleep(ms: number, signal: { wake?: (() => void) | undefined }): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.wake = undefined;
      resolve();
    }
    signal.wake = done;
  });
}

/** A claimed delivery with its event's columns (`eventColumnsSql`). */
interface ClaimRow extends Omit<EventRow, "id"> {
  id: string;
  event_id: string;
  observer: string;
  action_index: number;
  action_sig: string | null;
  attempts: number;
  attempt_base: number;
  replayed: boolean;
}

/**
 * The delivery engine of one process: routes captured events to observers (creating
 * deliveries), claims due deliveries under a lease, sends them, and settles the outcomes in
 * batches (success, retry with backoff, or dead letter). Several processes may run against one
 * database; claims use `FOR UPDATE SKIP LOCKED` and leases expire when a process dies.
 */
export class Dispatcher {
  readonly workerId: string;
  private readonly db: Database;
  private readonly config: ResolvedConfig;
  private readonly registry: ObserverRegistry;
  private readonly dlq: DlqBackend;
  private readonly sender: HttpSender;
  private readonly ownsSender: boolean;
  private readonly t: InternalTables;
  private readonly redactor: Redactor;
  private readonly random: () => number;
  private readonly routeBatch: number;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  /** Between heartbeats (lease renewal, worker row, idle flag): a third of the lease. */
  private readonly heartbeatMs: number;
  /** How long the idle flag holds without a renewal, seconds. */
  private readonly flagSeconds: number;
  /** The PostgreSQL DLQ lives in this database and is written in the settling transaction. */
  private readonly dlqInDatabase: boolean;
  private lastMaintenance = 0;
  private lastDlqLimits = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private flushScheduled: Promise<void> | undefined;
  /** Deliveries dead-lettered as upstream_failed by the settle in progress, announced after commit. */
  private cascadedDead: ClaimedDelivery[] = [];
  /** Per-origin token buckets, when `[webhooks.rate_limiting] enabled`. */
  private readonly limiter: RateLimiter | undefined;
  /** Some action sends batches, so batch claims run too. */
  private readonly hasBatches: boolean;
  /** Some sequential observer has more than one action: a success may release waiting deliveries, to be claimed. */
  private readonly hasChains: boolean;
  /** Observers of this config whose actions are not a sequence: nothing of theirs waits on another. */
  private readonly unchained: string[];
  /** `observer:hash` of every action of this config (the hash part of {@link RuntimeAction.sig}), for the claim. */
  private readonly knownActions: string[];
  /** performance.now() when the last lease renewal started (it renewed every running delivery of this process). */
  private leaseRenewedAt = 0;
  /** Due deliveries may be queued beyond what the last claim took: routing waits for them. */
  private backlog = true;
  /** Something may have made a queued delivery due since the last claim: the next look claims. */
  private claimRequested = true;
  /**
   * Some observer orders its deliveries per key or chains its actions: an outcome may let a
   * queued delivery go, so every settle asks for a claim.
   */
  private readonly hasQueuedSuccessors: boolean;
  /** This installation's id, from which delivery ids are derived; read before the first routing. */
  private instance: string | undefined;
  /**
   * Routing starts its deliveries while its write commits; after a routing write failed, the
   * next passes start them only once committed, until one commits again (a write that keeps
   * failing does not make a request per pass).
   */
  private sendBeforeCommit = true;
  /** The write of the last pipelined routing pass, settled (never rejected) once it committed or failed. */
  private committing: Promise<void> | undefined;
  /** Routing passes read and not yet committed or failed. */
  private passesOpen = 0;

  private running = false;
  private stopping = false;
  private loopPromise: Promise<void> | undefined;
  private readonly wakeSignal: { wake?: (() => void) | undefined } = {};
  private wakeRequested = false;
  private readonly inflight = new Map<string, Promise<void>>();
  private settleQueue: Settlement[] = [];
  /** Whether a heartbeat is running. */
  private beating = false;
  /** Whether this dispatcher raised the idle flag (and renews it with each heartbeat). */
  private flagged = false;
  /** The last write of the idle flag, settled (never rejected). */
  private flagWrites: Promise<void> = Promise.resolve();
  /** Outcomes in the settle being written now. */
  private settling = 0;
  private flushing: Promise<void> | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryTimerAt = Number.POSITIVE_INFINITY;
  private lastReclaim = 0;
  private lastClaim = 0;
  /** This process's liveness lock, while held. */
  private liveness: HeldLock | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(options: DispatcherOptions) {
    this.db = options.db;
    this.config = options.config;
    this.registry = options.registry;
    this.dlq = options.dlq;
    this.ownsSender = options.sender === undefined;
    this.sender = options.sender ?? createUndiciSender(senderOptionsFromConfig(options.config));
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
    this.t = internalTables(options.config.database.schema);
    this.redactor = createRedactor(options.config.secrets);
    this.random = options.random ?? Math.random;
    this.routeBatch = options.routeBatch ?? 500;
    const dispatch = options.config.webhooks.dispatch;
    this.concurrency = Math.max(1, Math.min(dispatch.concurrency, dispatch.maxQueueSize));
    this.leaseMs = dispatch.lease;
    this.heartbeatMs = Math.max(250, Math.floor(this.leaseMs / 3));
    // Three heartbeats and a second: a late beat does not let the flag lapse under a live dispatcher.
    this.flagSeconds = Math.ceil((3 * this.heartbeatMs) / 1000) + 1;
    this.dlqInDatabase = options.dlq.name === "postgresql";
    const rl = options.config.webhooks.rateLimiting;
    this.limiter = rl.enabled ? new RateLimiter(rl.maxPerSecond, rl.burst) : undefined;
    const observers = [...options.registry.byName.values()];
    this.hasBatches = observers.some((o) => o.actions.some((a) => a.batch !== undefined));
    const chained = (o: (typeof observers)[number]) =>
      o.model.execution === "sequential" && o.actions.length > 1;
    this.hasChains = observers.some(chained);
    this.unchained = observers.filter((o) => !chained(o)).map((o) => o.model.name);
    this.knownActions = observers.flatMap((o) => o.actions.map((a) => `${o.model.name}:${sigHash(a.sig)}`));
    this.hasQueuedSuccessors = this.hasChains || observers.some((o) => o.model.ordering === "per_key");
  }

  /** Starts the loop; returns at once. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = false;
    this.heartbeat = setInterval(() => void this.beat(), this.heartbeatMs);
    void this.beat();
    this.heartbeat.unref();
    this.loopPromise = this.loop();
  }

  /** Asks the loop to look for work now (called after an in-process mutation commits). */
  /**
   * Wakes the loop shortly after an attempt finished, so that the attempts finishing around the
   * same moment are claimed for and settled together (on the single-connection PGlite, waking at
   * once turns every response into its own claim and its own settle transaction).
   */
  private wakeSoon(): void {
    if (this.wakeTimer) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wakeLoop();
    }, WAKE_COALESCE_MS);
  }

  /** Starts a flush on the next turn of the event loop, so outcomes that arrive together share it. */
  private flushSoon(): Promise<void> {
    if (!this.flushScheduled) {
      this.flushScheduled = new Promise<void>((resolve) => {
        setImmediate(() => {
          this.flushScheduled = undefined;
          this.flush().then(resolve, resolve);
        });
      });
    }
    return this.flushScheduled;
  }

  /**
   * Asks the loop to look for work now, queued deliveries included: something may have made one
   * due (a retry's timer, a NOTIFY, an in-process mutation).
   */
  wake(): void {
    this.claimRequested = true;
    this.wakeLoop();
  }

  /** Asks the loop to look for work now; queued deliveries only if their turn came anyway (slots freed). */
  private wakeLoop(): void {
    this.wakeRequested = true;
    this.wakeSignal.wake?.();
  }

  /**
   * Stops claiming, lets in-flight attempts finish (up to `graceMs`), settles them, and gives
   * back the leases of anything still unfinished so another process takes it up at once.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.stopping = true;
    this.flagged = false;
    this.wake();
    await this.loopPromise;
    await this.committing;
    const grace = new Promise((r) => setTimeout(r, graceMs).unref());
    await Promise.race([Promise.allSettled([...this.inflight.values()]), grace]);
    await this.flush();
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    await this.unlisten?.().catch(() => {});
    this.unlisten = undefined;
    await this.writeFlag().catch(() => {});
    await this.db
      .query(
        `UPDATE ${this.t.deliveries} SET status = 'pending', locked_by = NULL, locked_until = NULL, run_at = now()
          WHERE locked_by = $1 AND status = 'running'`,
        [this.workerId],
      )
      .catch(() => {});
    await this.db.query(`DELETE FROM ${this.t.workers} WHERE id = $1`, [this.workerId]).catch(() => {});
    const liveness = this.liveness;
    this.liveness = undefined;
    await liveness?.release();
    if (this.ownsSender) await this.sender.close();
    this.running = false;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Resolves when no event is waiting to be routed and no delivery is pending, running or waiting. */
  async waitForIdle(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await this.db.query<{ busy: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM ${this.t.events} WHERE routed_at IS NULL)
             OR EXISTS (SELECT 1 FROM ${this.t.deliveries} WHERE status IN ('pending', 'running', 'waiting')) AS busy`,
      );
      if (!rows[0]?.busy && this.inflight.size === 0 && this.unwritten() === 0) return;
      if (Date.now() > deadline) throw new Error(`dispatcher not idle after ${timeoutMs}ms`);
      this.wake();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let idleSince = Date.now();
    try {
      this.unlisten = await this.db.listen(wakeChannel(this.config.database.schema), () => this.wake());
    } catch (error) {
      // Without LISTEN the dispatcher still polls every poll_interval.
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    }
    // A dispatcher killed while idle leaves the flag up until it expires (seconds), and writes
    // NOTIFY meanwhile: lower it now (this one raises it when it goes idle).
    await this.writeFlag().catch((error: unknown) => {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    });
    // The last look found nothing: the next one, unless something woke the loop, starts with
    // one cheap query that says whether there is anything to do.
    let quiet = false;
    while (!this.stopping) {
      const woken = this.wakeRequested;
      this.wakeRequested = false;
      try {
        const now = Date.now();
        if (now - this.lastReclaim > Math.min(this.leaseMs / 4, RECLAIM_INTERVAL_MS)) {
          this.lastReclaim = now;
          await this.reclaimExpired();
        }
        if (now - this.lastMaintenance > MAINTENANCE_INTERVAL) {
          this.lastMaintenance = now;
          await this.maintain();
        }
        let claimed = 0;
        let routed = 0;
        let routeLimit = 0;
        if (!quiet || woken || this.hasBatches || (await this.workWaiting())) {
          // Queued deliveries first (retries, replays, what routing could not start), then new
          // events: in order of arrival, and a backlog is never overtaken by newer events.
          // Busy with many attempts, the loop waits until a quarter of the slots (at most 64)
          // are free, so that claims, routing and settles carry many deliveries each.
          // Without a backlog, queued deliveries are looked for when something may have made
          // one due (a retry's timer, a reclaim, a NOTIFY, an outcome that releases a chain or
          // an ordering key) and at least every CLAIM_INTERVAL_MS (another process's retries and
          // replays), not on every look: not when finished attempts merely freed slots.
          const limit = Math.min(this.slotsToFill(), 256);
          if (
            limit > 0 &&
            (this.backlog || this.claimRequested || Date.now() - this.lastClaim >= CLAIM_INTERVAL_MS)
          ) {
            this.claimRequested = false;
            this.lastClaim = Date.now();
            claimed = await this.claim(limit);
            this.backlog = claimed === limit;
          }
          if (this.hasBatches && this.concurrency - this.inflight.size > 0) {
            claimed += await this.claimBatches(this.concurrency - this.inflight.size);
          }
          routeLimit = this.routeLimit();
          if (routeLimit > 0) routed = await this.route(routeLimit);
        }
        failures = 0;
        if (this.stopping) break;
        const saturated = this.slotsToFill() === 0;
        // With the slots taken the loop is not idle: a finished attempt wakes it, and writers
        // need not NOTIFY.
        const busy = routed > 0 || claimed > 0 || saturated;
        quiet = !busy;
        if (busy && this.flagged) {
          this.flagged = false;
          await this.writeFlag();
        }
        if (this.wakeRequested) continue;
        if (routeLimit > 0 && routed === routeLimit) continue;
        if ((claimed > 0 || this.backlog) && !saturated) continue;
        if (busy) {
          idleSince = Date.now();
          // Writers do not NOTIFY a busy dispatcher: look again shortly for what they wrote
          // since (a finished attempt wakes the loop sooner).
          const pause = saturated ? this.config.webhooks.dispatch.pollInterval : IDLE_POLL_MS;
          await sleep(Math.min(pause, this.config.webhooks.dispatch.pollInterval), this.wakeSignal);
          continue;
        }
        if (!this.flagged) {
          // Just idle: look again shortly for a while before asking writers to NOTIFY. Under a
          // steady trickle of writes the flag then stays down (no NOTIFY, no flag updates).
          if (Date.now() - idleSince < IDLE_SPIN_MS) {
            await sleep(Math.min(IDLE_POLL_MS, this.config.webhooks.dispatch.pollInterval), this.wakeSignal);
            continue;
          }
          // Ask writers to NOTIFY from now on, then look once more before sleeping: a change
          // committed just before the flag was set is found by that look, not lost.
          this.flagged = true;
          quiet = false;
          await this.writeFlag();
          continue;
        }
        await sleep(this.config.webhooks.dispatch.pollInterval, this.wakeSignal);
      } catch (error) {
        failures++;
        if (channels.error.hasSubscribers) channels.error.publish({ error });
        // The database may be restarting: back off, then try again; nothing is lost because
        // unrouted events and unclaimed deliveries stay in their tables.
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(failures, 6)), this.wakeSignal);
      }
    }
  }

  /**
   * Writes the flag the capture trigger reads, up if `flagged`, else down. The flag is the sequence `dispatch_sleeping`: while some dispatcher
   * is idle, the time (unix seconds) until which a write NOTIFYs it; 0 while dispatchers are
   * busy, so writes under load pay nothing. An idle dispatcher renews it with each heartbeat, so
   * it expires a few seconds after a dispatcher killed while idle. setval() is not transactional:
   * the next write sees it.
   */
  private writeFlag(): Promise<void> {
    // Each write reads `flagged` when its turn comes, after the writes before it: the loop's and
    // the heartbeat's writes land in order, and the last one says what is true now.
    const write = this.flagWrites.then(async () => {
      await this.db.query(
        `SELECT setval('${this.t.schema}.dispatch_sleeping',
                       CASE WHEN $1 THEN (date_part('epoch', now()) + $2)::bigint ELSE 0 END, true)`,
        [this.flagged, this.flagSeconds],
      );
    });
    this.flagWrites = write.catch(() => {});
    return write;
  }

  /** One cheap look: is any event waiting to be routed, or any delivery due? */
  private async workWaiting(): Promise<boolean> {
    const { rows } = await this.db.query<{ work: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM ${this.t.events} WHERE routed_at IS NULL)
           OR EXISTS (SELECT 1 FROM ${this.t.deliveries}
                       WHERE status = 'pending' AND run_at <= now() AND batch_key IS NULL) AS work`,
    );
    return rows[0]?.work === true;
  }

  /** Periodic housekeeping; a failure is reported and retried at the next interval. */
  private async maintain(): Promise<void> {
    try {
      await this.sweepHeldLetters();
      await this.sweepUnresolved();
      await this.releaseStrandedWaits();
      const dlqRetention = this.config.webhooks.dlq.retention;
      const retention = this.config.database.retention;
      await pruneOnce(this.db, this.t, retention, Math.max(retention, dlqRetention));
      if (this.config.webhooks.dlq.enabled && Date.now() - this.lastDlqLimits > DLQ_LIMITS_INTERVAL) {
        this.lastDlqLimits = Date.now();
        await this.dlq.enforceLimits();
      }
    } catch (error) {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    }
  }

  /**
   * Takes back deliveries whose lease ran out, and those of processes that stopped beating: a
   * process renews its heartbeat every lease/3, so one silent for two beats is taken for dead
   * and its work is sent again without waiting for the rest of the lease (a process that was
   * only stalled then sends duplicates, which at-least-once allows).
   */
  private async reclaimExpired(): Promise<void> {
    // A process whose liveness lock can be taken has died (the server freed the lock with its
    // connection): its work is taken back at once. The lock is taken for this statement only.
    const { rows: dead } = await this.db.query<{ id: string }>(
      `SELECT id FROM ${this.t.workers}
        WHERE id <> $2
          AND (heartbeat_at < now() - $1 * interval '1 millisecond'
               OR (liveness_lock AND pg_try_advisory_xact_lock(hashtextextended($3 || id, 0))))`,
      [(this.leaseMs * 2) / 3, this.workerId, this.livenessPrefix()],
    );
    const deadIds = dead.map((r) => r.id);
    if (deadIds.length > 0) {
      await this.db.query(`DELETE FROM ${this.t.workers} WHERE id = ANY($1::text[]) AND liveness_lock`, [
        deadIds,
      ]);
    }
    const { rowCount } = await this.db.query(
      `UPDATE ${this.t.deliveries} SET status = 'pending', locked_by = NULL, locked_until = NULL, updated_at = now()
        WHERE status = 'running' AND (locked_until < now() OR locked_by = ANY($1::text[]))`,
      [deadIds],
    );
    if (rowCount > 0) {
      this.claimRequested = true;
      this.wakeRequested = true;
    }
    // Rows of processes long gone.
    await this.db.query(
      `DELETE FROM ${this.t.workers} WHERE heartbeat_at < now() - $1 * interval '1 millisecond'`,
      [this.leaseMs * 20],
    );
  }

  /**
   * Every lease/3: renews the leases of in-flight deliveries, records this process as alive, and
   * re-divides the rate limit budget over the live processes.
   */
  private async beat(): Promise<void> {
    // One beat at a time: a lease renewal waiting for a row lock (a settle still writing those
    // rows) must not be joined by another on every tick, each holding a pooled connection.
    if (this.beating) return;
    this.beating = true;
    try {
      await this.beatOnce();
    } finally {
      this.beating = false;
    }
  }

  private async beatOnce(): Promise<void> {
    try {
      await this.takeLivenessLock();
      await this.db.query(
        `INSERT INTO ${this.t.workers} (id, liveness_lock) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), liveness_lock = $2`,
        [this.workerId, this.liveness !== undefined],
      );
      if (this.limiter) {
        const { rows } = await this.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${this.t.workers} WHERE heartbeat_at > now() - $1 * interval '1 millisecond'`,
          [this.leaseMs * 3],
        );
        const rl = this.config.webhooks.rateLimiting;
        this.limiter.share(rl.maxPerSecond, rl.burst, rows[0]?.n ?? 1, Date.now());
      }
    } catch (error) {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    }
    await this.renewLeases();
    if (this.flagged && !this.stopping) {
      await this.writeFlag().catch((error: unknown) => {
        if (channels.error.hasSubscribers) channels.error.publish({ error });
      });
    }
  }

  private livenessPrefix(): string {
    return `fraiseql.worker:${this.config.database.schema}:`;
  }

  /** Takes this process's liveness lock (again, after its connection was lost). */
  private async takeLivenessLock(): Promise<void> {
    if (this.liveness || !this.db.holdLock || this.stopping) return;
    if (!this.config.webhooks.dispatch.livenessLock) return;
    try {
      const held = await this.db.holdLock(this.livenessPrefix() + this.workerId);
      if (!held) return;
      this.liveness = held;
      void held.lost.then(() => {
        if (this.liveness === held) this.liveness = undefined;
      });
    } catch (error) {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    }
  }

  /**
   * Returns claimed deliveries to the queue unsent, due after `delayMs`, if they are still this
   * process's; the attempt is not counted.
   */
  private async giveBack(members: readonly ClaimedDelivery[], delayMs = 0): Promise<void> {
    // Started by routing: its rows exist once that write has committed (if it fails, there are none).
    const routed = members[0]?.routed;
    if (routed && !(await routed)) return;
    await this.db.query(
      `UPDATE ${this.t.deliveries}
          SET status = 'pending', run_at = now() + $3 * interval '1 millisecond', attempts = attempts - 1,
              locked_by = NULL, locked_until = NULL, updated_at = now()
        WHERE id = ANY($1::uuid[]) AND locked_by = $2 AND status = 'running'`,
      [members.map((m) => m.id), this.workerId, delayMs],
    );
    if (delayMs > 0) this.scheduleWake(delayMs);
    else this.claimRequested = true;
  }

  /**
   * Whether the lease of work claimed at `claimedAt` (performance.now()) may have been taken
   * back: other processes reclaim the work of one silent for two heartbeats (2/3 of the lease),
   * and neither the claim nor a lease renewal since is that recent.
   */
  private leaseLapsed(claimedAt: number): boolean {
    return performance.now() - Math.max(claimedAt, this.leaseRenewedAt) > (this.leaseMs * 2) / 3;
  }

  private async renewLeases(): Promise<void> {
    if (this.inflight.size === 0 && this.unwritten() === 0) return;
    const at = performance.now();
    try {
      await this.db.query(
        `UPDATE ${this.t.deliveries} SET locked_until = now() + $2 * interval '1 millisecond'
          WHERE locked_by = $1 AND status = 'running'`,
        [this.workerId, this.leaseMs],
      );
      this.leaseRenewedAt = at;
    } catch (error) {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    }
  }

  /**
   * How many events the next routing pass may take. Without batched actions, routing takes no
   * more events than there are free slots (an event usually makes one delivery), so a worker
   * does not queue work it cannot start while other workers could; and none while a backlog of
   * due deliveries waits. Events not routed yet stay in the outbox, which is as durable.
   */
  private routeLimit(): number {
    if (this.hasBatches) return this.routeBatch;
    if (this.backlog) return 0;
    return Math.min(this.routeBatch, this.slotsToFill());
  }

  /** Free slots worth filling now: all of them, or none while many attempts are still in flight. */
  private slotsToFill(): number {
    const free = this.concurrency - this.inflight.size;
    const batch = Math.max(1, Math.min(64, Math.floor(this.concurrency / 4)));
    return free >= batch || this.inflight.size < batch ? free : 0;
  }

  /**
   * Routes up to `limit` captured events to observers, in one transaction, and starts the
   * deliveries it can at once: those that wait for nothing (no earlier delivery of a chain or
   * of the same ordering key, no batch) are written as claimed by this process, up to the free
   * slots, and sent from the events just read, without a claim or a second read of the event.
   * Returns how many events it took.
   */
  private async route(limit: number): Promise<number> {
    // At most two passes open: one whose write commits, and this one.
    if (this.passesOpen >= 2) await this.committing;
    const slots = this.stopping ? 0 : this.concurrency - this.inflight.size;
    this.instance ??= await this.readInstance();
    const instance = this.instance;
    const read = unroutedEventsStatement(this.t, limit);
    // The requests go out while the write commits (its round trip, and the server's flush, are
    // not waited for): the event rows stay locked by this transaction meanwhile, so no other
    // worker routes them. If the write fails, the outcomes are dropped and the events, still
    // unrouted, are routed again later to the same delivery ids: a duplicate, never a loss.
    // With rate limiting, an attempt may write before it sends: it starts after the commit.
    // Such a pass returns once its events are read and its deliveries started, and the loop goes
    // on (claims, the next pass's read) while the write commits. A pass sends its write only once
    // the one before has committed, so passes commit in the order they read: a claim never sees
    // a later event's delivery without an earlier one's (per-key order). (On PGlite, with its one
    // connection, the next pass's transaction simply waits for this one.)
    const early = this.sendBeforeCommit && !this.limiter;
    const previous = this.committing;
    let committed: (ok: boolean) => void = () => {};
    const routed = early ? new Promise<boolean>((resolve) => (committed = resolve)) : undefined;
    let announce: (plan: RoutePlan) => void = () => {};
    const decided = new Promise<RoutePlan>((resolve) => (announce = resolve));
    const decide = async (rows: EventRow[]) => {
      const planned = this.planRoute(rows.map(toCapturedEvent), slots, instance, routed);
      announce(planned.value);
      if (previous) await previous;
      return planned;
    };
    this.passesOpen++;
    const written = this.db.readThenWrite(read, decide).finally(() => {
      this.passesOpen--;
    });
    const outcome = written.then(
      (plan) => {
        committed(true);
        this.sendBeforeCommit = true;
        this.afterRoute(plan);
      },
      (error: unknown) => {
        committed(false);
        this.sendBeforeCommit = false;
        throw error;
      },
    );
    // The read (and the plan), or the error of a pass that failed before it.
    const plan = await Promise.race([decided, written.then(() => decided)]).catch(async (error: unknown) => {
      await outcome.catch(() => {});
      throw error;
    });
    if (plan.queued) this.backlog = true;
    if (early) {
      this.startAll(plan.started);
      // A write that fails after its read is reported here; the loop's next pass goes on.
      this.committing = outcome.catch((error: unknown) => {
        if (channels.error.hasSubscribers) channels.error.publish({ error });
      });
    } else {
      await outcome;
      this.startAll(plan.started);
    }
    return plan.events;
  }

  /** After a routing write committed: queued deliveries are there to claim, and the announcement. */
  private afterRoute(plan: RoutePlan): void {
    if (plan.queued) this.claimRequested = true;
    if (plan.events > 0 && channels.routed.hasSubscribers)
      channels.routed.publish({ events: plan.events, entities: plan.entities, deliveries: plan.planned });
  }

  /** This installation's id (migration 002). */
  private async readInstance(): Promise<string> {
    const { rows } = await this.db.query<{ instance_id: string }>(
      `SELECT instance_id FROM ${this.t.schema}.dispatch_state WHERE id = 1`,
    );
    const id = rows[0]?.instance_id;
    if (!id) throw new Error(`${this.t.schema}.dispatch_state has no row: run fraiseql migrate`);
    return id;
  }

  /** Decides the deliveries of routed events, which of them start now, and the statement that writes them. */
  private planRoute(
    events: readonly CapturedEvent[],
    slots: number,
    instance: string,
    routed: Promise<boolean> | undefined,
  ): { write?: Statement | undefined; value: RoutePlan } {
    const entities: Record<string, number> = {};
    for (const e of events) entities[e.entity] = (entities[e.entity] ?? 0) + 1;
    const plan: RoutePlan = { events: events.length, entities, planned: [], started: [], queued: false };
    if (events.length === 0) return { value: plan };
    const byId = new Map(events.map((e) => [e.id, e]));
    plan.planned = events.flatMap((event) => planDeliveries(event, this.registry, instance));
    const rows = plan.planned.map((p) => {
      const now =
        plan.started.length < slots &&
        p.status === "pending" &&
        p.orderingKey === null &&
        p.batchKey === null;
      if (now) {
        plan.started.push({
          id: p.id,
          eventId: p.eventId,
          observer: p.observer,
          actionIndex: p.actionIndex,
          actionSig: p.actionSig,
          leasedAt: performance.now(),
          attempt: 1,
          attemptBase: 0,
          replayed: false,
          event: byId.get(p.eventId) as CapturedEvent,
          routed,
        });
      } else if (p.status === "pending" && p.batchKey === null) {
        plan.queued = true;
      }
      return { planned: p, running: now };
    });
    const write = routeStatement(
      this.t,
      rows,
      events.map((e) => e.id),
      this.workerId,
      this.leaseMs,
    );
    return { write, value: plan };
  }

  private startAll(deliveries: readonly ClaimedDelivery[]): void {
    for (const delivery of deliveries) this.track(delivery.id, this.attempt([delivery]));
  }

  /**
   * Holds a slot for an attempt (`key`: its delivery or batch id) until its outcome is queued for
   * the next settle (or written, while outcomes pile up).
   */
  private track(key: string, attempt: Promise<void>): void {
    const p = attempt.finally(() => {
      this.inflight.delete(key);
      if (!this.stopping) this.wakeSoon();
    });
    this.inflight.set(key, p);
  }

  /** Claims up to `limit` due deliveries and starts sending them; returns how many. */
  private async claim(limit: number): Promise<number> {
    const leasedAt = performance.now();
    const { rows } = await this.db.query<ClaimRow>(
      `WITH due AS (
         SELECT d.id FROM ${this.t.deliveries} d
          WHERE d.status = 'pending' AND d.run_at <= now() AND d.batch_key IS NULL
            -- an action this config has (or one routed before signatures); another's only once
            -- its grace is over, to be dead-lettered: until then a process that has it sends it
            AND (d.action_sig IS NULL
                 OR d.observer || ':' || split_part(d.action_sig, '.', 1) = ANY($4::text[])
                 OR d.created_at < now() - $5 * interval '1 millisecond')
            AND (d.ordering_key IS NULL OR (NOT EXISTS (
                  SELECT 1 FROM ${this.t.deliveries} p
                   WHERE p.ordering_key = d.ordering_key AND p.event_id < d.event_id
                     AND p.status IN ('pending', 'running', 'waiting'))
                 -- nor an earlier event still to route (its routing write not committed yet,
                 -- or failed, in this process or another): it may have a delivery of this key
                 AND NOT EXISTS (
                  SELECT 1 FROM ${this.t.events} e WHERE e.routed_at IS NULL AND e.id < d.event_id)))
          ORDER BY d.run_at LIMIT $2 FOR UPDATE SKIP LOCKED
       ), claimed AS (
         UPDATE ${this.t.deliveries} d
            SET status = 'running', attempts = d.attempts + 1, locked_by = $1,
                locked_until = now() + $3 * interval '1 millisecond', updated_at = now()
           FROM due WHERE d.id = due.id
         RETURNING d.id, d.event_id, d.observer, d.action_index, d.action_sig, d.attempts, d.attempt_base,
                   d.replayed_at IS NOT NULL AS replayed
       )
       SELECT c.id, c.event_id, c.observer, c.action_index, c.action_sig, c.attempts, c.attempt_base, c.replayed,
              ${eventColumnsSql("e")}
         FROM claimed c JOIN ${this.t.events} e ON e.id = c.event_id`,
      [this.workerId, limit, this.leaseMs, this.knownActions, UNKNOWN_ACTION_GRACE_MS],
    );
    this.startAll(rows.map((row) => claimedFromRow(row, leasedAt)));
    return rows.length;
  }

  /**
   * Starts the batches that are due: for each batched action, a full batch, or a partial one
   * whose oldest delivery has waited the batch timeout; and batches being retried (claimed again
   * whole, by their id). Returns how many batches started.
   */
  private async claimBatches(slots: number): Promise<number> {
    let started = 0;
    const { rows: retrying } = await this.db.query<{ batch_id: string }>(
      `SELECT batch_id FROM ${this.t.deliveries}
        WHERE status = 'pending' AND batch_id IS NOT NULL AND run_at <= now()
        GROUP BY batch_id LIMIT $1`,
      [slots],
    );
    for (const { batch_id } of retrying) {
      // Whole or not at all: under the batch's own lock, every member (waiting for a row lock
      // rather than skipping it), so that two processes never send parts of one batch under its id.
      const members = await this.claimBatchMembers(
        `SELECT id FROM ${this.t.deliveries} WHERE batch_id = $4 AND status = 'pending' ORDER BY id FOR UPDATE`,
        [batch_id],
        batch_id,
        `batch:${batch_id}`,
      );
      if (members.length > 0) {
        this.track(batch_id, this.attempt(members, batch_id));
        started++;
      }
    }
    if (started >= slots) return started;
    const { rows: groups } = await this.db.query<{ batch_key: string; n: number; age_ms: number }>(
      `SELECT batch_key, count(*)::int AS n,
              (extract(epoch FROM now() - min(created_at)) * 1000)::float8 AS age_ms
         FROM ${this.t.deliveries}
        WHERE status = 'pending' AND batch_key IS NOT NULL AND batch_id IS NULL AND run_at <= now()
        GROUP BY batch_key`,
    );
    for (const group of groups) {
      if (started >= slots) break;
      const [observerName, index] = splitBatchKey(group.batch_key);
      const policy = this.registry.byName.get(observerName)?.actions[index]?.batch;
      const size = policy?.size ?? 1;
      const timeout = policy?.timeout ?? 0;
      let available = group.n;
      while (available >= size || (available > 0 && group.age_ms >= timeout)) {
        if (started >= slots) break;
        const batchId = randomUUID();
        // The count above was read before the action's lock: another process may have taken a
        // full batch since. Under the lock, a batch leaves only if it is full or its oldest
        // delivery has waited the timeout.
        const members = await this.claimBatchMembers(
          `SELECT id, created_at FROM ${this.t.deliveries}
            WHERE batch_key = $4 AND batch_id IS NULL AND status = 'pending' AND run_at <= now()
            ORDER BY event_id LIMIT $5 FOR UPDATE SKIP LOCKED`,
          [group.batch_key, size, timeout],
          batchId,
          group.batch_key,
          `(SELECT count(*) FROM due) >= $5 OR (SELECT min(created_at) FROM due) <= now() - $6 * interval '1 millisecond'`,
        );
        if (members.length === 0) break;
        this.track(batchId, this.attempt(members, batchId));
        started++;
        available -= members.length;
      }
      // A partial batch is sent when its oldest delivery has waited `timeout`.
      if (available > 0 && available < size) this.scheduleWake(Math.max(0, timeout - group.age_ms));
    }
    return started;
  }

  /**
   * Claims the deliveries `select` finds (as `due`, with `params` from $4) into the batch
   * `batchId`, in one transaction; with `lockKey`, only while holding that advisory lock (none
   * claimed when another process holds it), and with `when`, only if that condition on `due` holds.
   */
  private async claimBatchMembers(
    select: string,
    params: unknown[],
    batchId: string,
    lockKey?: string,
    when?: string,
  ): Promise<ClaimedDelivery[]> {
    const leasedAt = performance.now();
    const rows = await this.db.transaction(async (tx) => {
      // One process at a time fills a batch of one action, so two never split it.
      if (lockKey !== undefined) {
        const { rows: lock } = await tx.query<{ ok: boolean }>(
          "SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok",
          [lockKey],
        );
        if (!lock[0]?.ok) return [];
      }
      const { rows } = await tx.query<ClaimRow>(
        `WITH due AS (${select}), claimed AS (
           UPDATE ${this.t.deliveries} d
              SET status = 'running', batch_id = $1::uuid, attempts = d.attempts + 1, locked_by = $2,
                  locked_until = now() + $3 * interval '1 millisecond', updated_at = now()
             FROM due WHERE d.id = due.id${when === undefined ? "" : ` AND (${when})`}
           RETURNING d.id, d.event_id, d.observer, d.action_index, d.action_sig, d.attempts, d.attempt_base,
                     d.replayed_at IS NOT NULL AS replayed
         )
         SELECT c.id, c.event_id, c.observer, c.action_index, c.action_sig, c.attempts, c.attempt_base, c.replayed,
                ${eventColumnsSql("e")}
           FROM claimed c JOIN ${this.t.events} e ON e.id = c.event_id ORDER BY c.event_id`,
        [batchId, this.workerId, this.leaseMs, ...params],
      );
      return rows;
    });
    return rows.map((row) => claimedFromRow(row, leasedAt));
  }

  /**
   * One HTTP attempt: of one delivery, or of the members of a batch sent as one request under the
   * batch id. The outcome applies to every member.
   */
  private async attempt(members: readonly ClaimedDelivery[], batchId?: string): Promise<void> {
    const claimedAt = members[0]?.leasedAt ?? performance.now();
    const startedAt = new Date();
    const first = members[0] as ClaimedDelivery;
    const observer = this.registry.byName.get(first.observer);
    const action = observer && actionOf(observer, first.actionIndex, first.actionSig);
    let attempt = first.attempt;
    let base = first.attemptBase;
    for (const m of members) {
      if (m.attempt > attempt) attempt = m.attempt;
      if (m.attemptBase > base) base = m.attemptBase;
    }
    let request: RenderedRequest | undefined;
    let headers: Record<string, string> | undefined;
    let result: HttpResult;
    if (!observer || !action) {
      // Another process, of a newer config, may know it (a rolling deploy): it is left to the
      // others for a while, and dead-lettered once its change is older than that.
      if (Date.now() - Date.parse(first.event.timestamp) < UNKNOWN_ACTION_GRACE_MS) {
        await this.giveBack(members, UNKNOWN_ACTION_RETRY_MS);
        return;
      }
      result = invalidRequest(
        `observer ${first.observer} action ${first.actionIndex} is not configured any more`,
      );
    } else {
      try {
        request =
          batchId === undefined
            ? renderRequest(first.event, observer, action)
            : renderBatchRequest(
                members.map((m) => m.event),
                observer,
                action,
                startedAt.toISOString(),
              );
        // Without a rate limit there is nothing to wait for: no await (a microtask per attempt).
        if (this.limiter && !(await this.throttle(request.url, members))) return;
        headers = attemptHeaders(request, batchId ?? first.id, attempt, this.config.webhooks.signing);
        // A process stalled (stopped, starved) past the point where others take its work back
        // sends nothing: another process may have sent this delivery, and later ones of its key,
        // meanwhile. What is still its own goes back to the queue, unsent and uncounted.
        if (this.leaseLapsed(claimedAt)) {
          await this.giveBack(members);
          return;
        }
        result = await this.sender.send({
          url: request.url,
          method: request.method,
          headers,
          body: request.body,
          timeout: action.model.timeout,
          untrustedHost: hostIsTemplated(action.model.url),
        });
      } catch (err) {
        if (!(err instanceof InvalidRequest)) throw err;
        result = invalidRequest(err.message);
      }
    }
    // Started while its routing write was committing: nothing to settle if that failed.
    if (first.routed && !(await first.routed)) return;
    const policy = observer?.model.retry ?? this.config.webhooks.retry;
    const decision = decideRetry(policy, attempt - base, result.outcome, this.random);
    this.noteRateLimited(request?.url, result);
    for (const delivery of members) {
      const record: AttemptRecord = {
        delivery,
        result,
        decision,
        request,
        headers,
        startedAt,
        decidedAt: Date.now(),
        batchId,
      };
      if (channels.attempt.hasSubscribers && delivery === first) channels.attempt.publish(record);
      this.settleQueue.push({ record });
    }
    const written = this.flushSoon();
    // The slot is free once the outcome is queued: the delivery stays leased (running) until the
    // settle that writes it commits, so a crash before then sends it again (at least once). While
    // outcomes wait for their write faster than settles write them, the slot waits for the write.
    if (this.unwritten() > this.concurrency) await written;
  }

  /**
   * Waits for a token of the receiver's bucket. A wait longer than a second is not spent holding
   * the delivery: its token is given back and the delivery returns to the queue, due when the
   * bucket will have room (the attempt it was claimed for is not counted). Returns false then.
   */
  private async throttle(url: string, members: readonly ClaimedDelivery[]): Promise<boolean> {
    if (!this.limiter) return true;
    const origin = new URL(url).origin;
    const wait = this.limiter.reserve(origin, Date.now());
    if (wait <= 0) return true;
    if (wait <= MAX_IN_MEMORY_WAIT) {
      await new Promise((r) => setTimeout(r, wait));
      return true;
    }
    this.limiter.refund(origin);
    await this.db.query(
      `UPDATE ${this.t.deliveries}
          SET status = 'pending', run_at = now() + $3 * interval '1 millisecond', attempts = attempts - 1,
              locked_by = NULL, locked_until = NULL, updated_at = now()
        WHERE id = ANY($1::uuid[]) AND locked_by = $2 AND status = 'running'`,
      [members.map((m) => m.id), this.workerId, wait],
    );
    this.scheduleWake(wait);
    return false;
  }

  /** A 429 pauses the whole endpoint for its Retry-After (1 s without one), not just this delivery. */
  private noteRateLimited(url: string | undefined, result: HttpResult): void {
    if (!this.limiter || url === undefined) return;
    const o = result.outcome;
    if (o.kind !== "http" || o.status !== 429) return;
    const now = Date.now();
    this.limiter.pause(new URL(url).origin, now + (o.retryAfterMs ?? 1000), now);
  }

  /** Outcomes not written yet: queued for the next settle, or in the one being written. */
  private unwritten(): number {
    return this.settleQueue.length + this.settling;
  }

  /** Writes every queued outcome in one transaction; concurrent callers share one flush. */
  private flush(): Promise<void> {
    if (this.flushing)
      return this.flushing.then(() => (this.settleQueue.length > 0 ? this.flush() : undefined));
    if (this.settleQueue.length === 0) return Promise.resolve();
    const batch = this.settleQueue;
    this.settleQueue = [];
    this.settling = batch.length;
    this.flushing = this.settle(batch)
      .catch(async (error) => {
        if (channels.error.hasSubscribers) channels.error.publish({ error });
        // Outcomes that could not be written stay owned by this process until the lease
        // expires; then the deliveries are attempted again (at-least-once).
      })
      .finally(() => {
        this.flushing = undefined;
        this.settling = 0;
      });
    return this.flushing;
  }

  private async settle(batch: readonly Settlement[]): Promise<void> {
    const done = batch.filter((s) => s.record.decision.action === "succeeded");
    const retry = batch.filter((s) => s.record.decision.action === "retry");
    const dead = batch.filter((s) => s.record.decision.action === "dead");
    const redact = this.redactor;
    this.cascadedDead = [];
    let resolveAfterCommit: { id: string; dlq_key: string }[] = [];
    let lettersAfterCommit: HeldLetter[] = [];
    const history = JSON.stringify(
      batch.map(({ record: r }) => ({
        delivery_id: r.delivery.id,
        attempt: r.delivery.attempt,
        started_at: r.startedAt.toISOString(),
        duration_ms: r.result.durationMs,
        status: statusOf(r.result.outcome),
        outcome: r.decision.action === "succeeded" ? "success" : r.result.outcome.kind,
        error: r.result.error === undefined ? null : redact.text(r.result.error),
        response_excerpt: r.result.excerpt === undefined ? null : redact.text(r.result.excerpt),
      })),
    );
    const insertHistory = `INSERT INTO ${this.t.attempts} (delivery_id, attempt, started_at, duration_ms, status, outcome, error, response_excerpt)
         SELECT delivery_id, attempt, started_at, duration_ms, status, outcome, error, response_excerpt
           FROM jsonb_to_recordset($1::jsonb) AS x(delivery_id uuid, attempt int, started_at timestamptz,
                duration_ms float8, status int, outcome text, error text, response_excerpt text)
         ON CONFLICT DO NOTHING`;
    // The history, the successes and the release of the actions waiting behind them in their
    // sequence are one statement; when that is all there is to write (no retry, no dead letter,
    // no DLQ entry to resolve) it needs no transaction of its own. The release does not depend
    // on this process's config: a delivery waits on the one before it whatever config routed
    // it (a sequence made parallel since, or a process of another version), and must not wait
    // for good.
    let released = 0;
    const writeDone = async (q: Queryable) => {
      if (done.length === 0) {
        await q.query(insertHistory, [history]);
        return [];
      }
      const { rows } = await q.query<{ id: string; dlq_key: string; replayed: boolean; released: number }>(
        `WITH history AS (${insertHistory}), done AS (
           UPDATE ${this.t.deliveries} d
              SET status = 'succeeded', last_status = x.status, last_error = NULL, reason = NULL,
                  locked_by = NULL, locked_until = NULL, finished_at = now(), updated_at = now()
             FROM jsonb_to_recordset($2::jsonb) AS x(id uuid, status int)
            WHERE d.id = x.id AND d.locked_by = $3 AND d.status = 'running'
           RETURNING d.id, coalesce(d.batch_id, d.id)::text AS dlq_key, d.replayed_at IS NOT NULL AS replayed
         ), released AS (
           UPDATE ${this.t.deliveries} w SET status = 'pending', run_at = now(), updated_at = now()
             FROM done WHERE w.status = 'waiting' AND w.depends_on = done.id
           RETURNING w.id
         )
         SELECT done.id, done.dlq_key, done.replayed, (SELECT count(*)::int FROM released) AS released
           FROM done`,
        [
          history,
          JSON.stringify(
            done.map(({ record: r }) => ({ id: r.delivery.id, status: statusOf(r.result.outcome) })),
          ),
          this.workerId,
        ],
      );
      released = rows[0]?.released ?? 0;
      return rows;
    };
    const simple = retry.length === 0 && dead.length === 0 && !done.some((s) => s.record.delivery.replayed);
    if (simple) {
      await writeDone(this.db);
      this.afterSettle(batch, retry, released);
      return;
    }
    await this.db.transaction(async (tx) => {
      const rows = await writeDone(tx);
      if (rows.length > 0) {
        // A replayed delivery that got through leaves the DLQ: in this transaction, or, for a
        // backend outside the database, after it, marked until the backend confirms.
        const replayed = rows.filter((r) => r.replayed);
        if (replayed.length > 0) {
          if (this.dlqInDatabase) await this.dlq.resolve([...new Set(replayed.map((r) => r.dlq_key))], tx);
          else {
            await tx.query(
              `UPDATE ${this.t.deliveries} SET dlq_resolve_pending = true WHERE id = ANY($1::uuid[])`,
              [replayed.map((r) => r.id)],
            );
            resolveAfterCommit = replayed;
          }
        }
      }
      if (retry.length > 0) {
        await tx.query(
          `UPDATE ${this.t.deliveries} d
              SET status = 'pending', run_at = now() + x.delay * interval '1 millisecond',
                  last_status = x.status, last_error = x.error, locked_by = NULL, locked_until = NULL, updated_at = now()
             FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, delay float8, status int, error text)
            WHERE d.id = x.id AND d.locked_by = $2 AND d.status = 'running'`,
          [
            JSON.stringify(
              retry.map(({ record: r }) => ({
                id: r.delivery.id,
                delay: retryDelayLeft(r),
                status: statusOf(r.result.outcome),
                error: r.result.error === undefined ? null : redact.text(r.result.error),
              })),
            ),
            this.workerId,
          ],
        );
      }
      if (dead.length > 0) lettersAfterCommit = await this.settleDead(tx, dead);
    });
    if (resolveAfterCommit.length > 0) await this.resolveMarked(resolveAfterCommit);
    if (lettersAfterCommit.length > 0) await this.writeHeldLetters(lettersAfterCommit);
    this.afterSettle(batch, retry, released);
  }

  /** After the outcomes committed: wake-ups for retries, and the settled announcements. */
  private afterSettle(batch: readonly Settlement[], retry: readonly Settlement[], released: number): void {
    // The wake-up follows when the attempts' slots are freed.
    if ((this.hasQueuedSuccessors && batch.length > 0) || released > 0) this.claimRequested = true;
    for (const s of retry) {
      if (s.record.decision.action === "retry") this.scheduleWake(retryDelayLeft(s.record));
    }
    const cascaded = this.cascadedDead.splice(0);
    if (channels.settled.hasSubscribers) {
      for (const { record } of batch)
        channels.settled.publish({ delivery: record.delivery, decision: record.decision });
      for (const delivery of cascaded) {
        channels.settled.publish({
          delivery,
          decision: { action: "dead", reason: "upstream_failed", exhausted: false },
        });
      }
    }
  }

  /**
   * Marks deliveries dead and writes their dead letters in the same transaction; in a sequential
   * observer the deliveries waiting behind one are dead-lettered too, with reason
   * `upstream_failed`, so that a replay can resume the chain.
   */
  private async settleDead(tx: Queryable, dead: readonly Settlement[]): Promise<HeldLetter[]> {
    const { rows: owned } = await tx.query<{ id: string }>(
      `UPDATE ${this.t.deliveries} d
          SET status = 'dead', reason = x.reason, last_status = x.status, last_error = x.error,
              locked_by = NULL, locked_until = NULL, finished_at = now(), updated_at = now()
         FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, reason text, status int, error text)
        WHERE d.id = x.id AND d.locked_by = $2 AND d.status = 'running'
       RETURNING d.id`,
      [
        JSON.stringify(
          dead.map(({ record: r }) => ({
            id: r.delivery.id,
            reason: r.decision.action === "dead" ? r.decision.reason : "unknown",
            status: statusOf(r.result.outcome),
            error: r.result.error === undefined ? null : this.redactor.text(r.result.error),
          })),
        ),
        this.workerId,
      ],
    );
    const ownedIds = new Set(owned.map((r) => r.id));
    const letters: HeldLetter[] = [];
    const failedAt = new Date().toISOString();
    const batches = new Set<string>();
    for (const { record } of dead) {
      if (!ownedIds.has(record.delivery.id)) continue;
      // A batch is dead-lettered as a unit: one entry, keyed by the batch id, whose payload lists its events.
      if (record.batchId !== undefined) {
        if (batches.has(record.batchId)) continue;
        batches.add(record.batchId);
      }
      // Held on the member that stands for the batch: the letter's delivery_id is the batch id.
      letters.push({ row: record.delivery.id, letter: this.deadLetter(record.delivery, record, failedAt) });
    }
    if (ownedIds.size > 0) {
      const { rows: cascaded } = await tx.query<{
        id: string;
        event_id: string;
        observer: string;
        action_index: number;
        action_sig: string | null;
      }>(
        `WITH RECURSIVE chain AS (
           SELECT id FROM ${this.t.deliveries} WHERE status = 'waiting' AND depends_on = ANY($1::uuid[])
           UNION
           SELECT d.id FROM ${this.t.deliveries} d JOIN chain c ON d.depends_on = c.id WHERE d.status = 'waiting'
         )
         UPDATE ${this.t.deliveries} d SET status = 'dead', reason = 'upstream_failed', finished_at = now(), updated_at = now()
           FROM chain WHERE d.id = chain.id
         RETURNING d.id, d.event_id, d.observer, d.action_index, d.action_sig`,
        [[...ownedIds]],
      );
      const events = new Map(dead.map(({ record }) => [record.delivery.eventId, record.delivery.event]));
      for (const row of cascaded) {
        const event = events.get(String(row.event_id));
        if (!event) continue;
        const delivery: ClaimedDelivery = {
          id: row.id,
          eventId: String(row.event_id),
          observer: row.observer,
          actionIndex: row.action_index,
          actionSig: row.action_sig,
          attempt: 0,
          attemptBase: 0,
          replayed: false,
          event,
        };
        letters.push({ row: delivery.id, letter: this.deadLetter(delivery, undefined, failedAt) });
        this.cascadedDead.push(delivery);
      }
    }
    if (!this.config.webhooks.dlq.enabled) return [];
    if (this.dlqInDatabase) {
      await this.dlq.write(
        letters.map((l) => l.letter),
        tx,
      );
      return [];
    }
    // A backend outside the database cannot join this transaction: the dead letter is kept on
    // the delivery row first, then written to the backend after commit (and retried by the
    // sweeper while the backend is unreachable), so it is never lost.
    await this.holdLetters(tx, letters);
    return letters;
  }

  private async holdLetters(tx: Queryable, letters: readonly HeldLetter[]): Promise<void> {
    if (letters.length === 0) return;
    await tx.query(
      `UPDATE ${this.t.deliveries} d SET dead_letter = x.letter
         FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, letter jsonb) WHERE d.id = x.id`,
      [JSON.stringify(letters.map(({ row, letter }) => ({ id: row, letter })))],
    );
  }

  /** Writes dead letters held on delivery rows to the backend, then clears them. */
  private async writeHeldLetters(letters: readonly HeldLetter[]): Promise<boolean> {
    try {
      await this.dlq.write(letters.map((l) => l.letter));
      await this.db.query(`UPDATE ${this.t.deliveries} SET dead_letter = NULL WHERE id = ANY($1::uuid[])`, [
        letters.map((l) => l.row),
      ]);
      return true;
    } catch (error) {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
      return false;
    }
  }

  /**
   * Releases deliveries left waiting in their sequence behind one that has succeeded or is gone
   * (pruned), and those of observers that are no sequence in this config (made `parallel`, or
   * down to one action, since they were routed): they are sent independently now. A success
   * releases its successors in its own statement; earlier versions did so only when their own
   * config had a sequence, so a rolling deploy could leave some waiting for good.
   */
  private async releaseStrandedWaits(): Promise<void> {
    const { rowCount } = await this.db.query(
      `UPDATE ${this.t.deliveries} w SET status = 'pending', run_at = now(), updated_at = now()
        WHERE w.id IN (
          SELECT s.id FROM ${this.t.deliveries} s
           WHERE s.status = 'waiting'
             AND (s.observer = ANY($1::text[])
                  OR NOT EXISTS (SELECT 1 FROM ${this.t.deliveries} p
                                  WHERE p.id = s.depends_on AND p.status <> 'succeeded'))
           LIMIT 500 FOR UPDATE SKIP LOCKED)`,
      [this.unchained],
    );
    if (rowCount > 0) this.wake();
  }

  /** Retries dead letters that could not be written to the backend yet. */
  private async sweepHeldLetters(): Promise<void> {
    if (this.dlqInDatabase) return;
    const { rows } = await this.db.query<HeldLetter>(
      `SELECT id AS row, dead_letter AS letter FROM ${this.t.deliveries} WHERE dead_letter IS NOT NULL ORDER BY updated_at LIMIT 500`,
    );
    if (rows.length > 0) await this.writeHeldLetters(rows);
  }

  /** Entries of replayed deliveries that succeeded, whose removal from the backend failed: again. */
  private async sweepUnresolved(): Promise<void> {
    if (this.dlqInDatabase) return;
    const { rows: unresolved } = await this.db.query<{ id: string; dlq_key: string }>(
      `SELECT id, coalesce(batch_id, id)::text AS dlq_key FROM ${this.t.deliveries}
        WHERE dlq_resolve_pending ORDER BY updated_at LIMIT 500`,
    );
    if (unresolved.length > 0) await this.resolveMarked(unresolved);
  }

  /**
   * Removes the DLQ entries of replayed deliveries that succeeded, from a backend outside the
   * database, and clears their marks once it confirmed. On failure the marks stay and the
   * housekeeping tries again (resolving an entry already gone does nothing).
   */
  private async resolveMarked(deliveries: readonly { id: string; dlq_key: string }[]): Promise<void> {
    try {
      await this.dlq.resolve([...new Set(deliveries.map((d) => d.dlq_key))]);
      await this.db.query(
        `UPDATE ${this.t.deliveries} SET dlq_resolve_pending = false WHERE id = ANY($1::uuid[])`,
        [deliveries.map((d) => d.id)],
      );
    } catch (error) {
      if (channels.error.hasSubscribers) channels.error.publish({ error });
    }
  }

  private deadLetter(
    delivery: ClaimedDelivery,
    record: AttemptRecord | undefined,
    failedAt: string,
  ): DeadLetter {
    let request = record?.request;
    let url = request?.url;
    const observer = this.registry.byName.get(delivery.observer);
    const action = observer && actionOf(observer, delivery.actionIndex, delivery.actionSig);
    if (!request && observer && action) {
      try {
        request = renderRequest(delivery.event, observer, action);
        url = request.url;
      } catch {
        // The request could not be built (a header with CR/LF, say): the URL alone, rendered.
        try {
          url = renderUrl(delivery.event, observer, action);
        } catch {
          url = undefined;
        }
      }
    }
    const headers = record?.headers ?? request?.headers ?? {};
    return {
      id: `dlq_${randomUUID().replaceAll("-", "").slice(0, 20)}`,
      observer: delivery.observer,
      entity: delivery.event.entity,
      event: delivery.event.op,
      event_id: delivery.eventId,
      delivery_id: record?.batchId ?? delivery.id,
      url: this.redactor.text(url ?? action?.model.url ?? ""),
      method: request?.method ?? action?.model.method ?? "POST",
      request_headers: this.redactor.headers(headers),
      payload: this.redactor.json(request?.payload ?? null),
      attempts: delivery.attempt,
      last_status: record ? statusOf(record.result.outcome) : null,
      last_error: record?.result.error === undefined ? null : this.redactor.text(record.result.error),
      reason: record?.decision.action === "dead" ? record.decision.reason : "upstream_failed",
      failed_at: failedAt,
      replayed_at: null,
      replay_count: 0,
    };
  }

  private scheduleWake(delayMs: number): void {
    const at = Date.now() + delayMs;
    if (at >= this.retryTimerAt) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimerAt = at;
    this.retryTimer = setTimeout(() => {
      this.retryTimerAt = Number.POSITIVE_INFINITY;
      this.retryTimer = undefined;
      this.wake();
    }, Math.max(0, delayMs) + 2);
    this.retryTimer.unref();
  }
}

function claimedFromRow(row: ClaimRow, leasedAt: number): ClaimedDelivery {
  const eventId = String(row.event_id);
  return {
    id: row.id,
    eventId,
    observer: row.observer,
    actionIndex: row.action_index,
    actionSig: row.action_sig,
    leasedAt,
    attempt: row.attempts,
    attemptBase: row.attempt_base,
    replayed: row.replayed,
    event: capturedEvent(eventId, row),
  };
}

function splitBatchKey(key: string): [string, number] {
  const i = key.lastIndexOf(":");
  return [key.slice(0, i), Number(key.slice(i + 1))];
}

function statusOf(outcome: AttemptOutcome): number | null {
  return outcome.kind === "success" || outcome.kind === "http" ? outcome.status : null;
}

/**
 * Writes the deliveries of routed events and marks the events routed, in one statement.
 * Deliveries started at once are written as `running`, leased to `workerId`, attempt 1.
 */
function routeStatement(
  t: InternalTables,
  rows: readonly { planned: PlannedDelivery; running: boolean }[],
  eventIds: readonly string[],
  workerId: string,
  leaseMs: number,
): Statement {
  return {
    text: `WITH inserted AS (
       INSERT INTO ${t.deliveries}
              (id, event_id, observer, action_index, status, attempts, locked_by, locked_until,
               depends_on, ordering_key, batch_key, action_sig)
       SELECT id, event_id, observer, action_index, CASE WHEN running THEN 'running' ELSE status END,
              CASE WHEN running THEN 1 ELSE 0 END, CASE WHEN running THEN $3 END,
              CASE WHEN running THEN now() + $4 * interval '1 millisecond' END,
              depends_on, ordering_key, batch_key, action_sig
         FROM jsonb_to_recordset($1::jsonb)
           AS x(id uuid, event_id bigint, observer text, action_index int, status text, running boolean,
                depends_on uuid, ordering_key text, batch_key text, action_sig text)
     )
     UPDATE ${t.events} SET routed_at = now() WHERE id = ANY($2::bigint[])`,
    params: [
      JSON.stringify(
        rows.map(({ planned: p, running }) => ({
          id: p.id,
          event_id: p.eventId,
          observer: p.observer,
          action_index: p.actionIndex,
          status: p.status,
          running,
          depends_on: p.dependsOn,
          ordering_key: p.orderingKey,
          batch_key: p.batchKey,
          action_sig: p.actionSig,
        })),
      ),
      eventIds,
      workerId,
      leaseMs,
    ],
  };
}
