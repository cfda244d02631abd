-- Outbox of captured row changes. Written by the capture trigger in the transaction that changed
-- the row, so a change is recorded exactly when it commits.
CREATE TABLE __SCHEMA__.events (
  id           bigserial PRIMARY KEY,
  entity       text        NOT NULL,
  table_schema text        NOT NULL,
  table_name   text        NOT NULL,
  op           text        NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE')),
  old_row      jsonb,
  new_row      jsonb,
  changed      text[],
  txid         bigint      NOT NULL DEFAULT txid_current(),
  created_at   timestamptz NOT NULL DEFAULT now(),
  routed_at    timestamptz
);
CREATE INDEX events_unrouted_idx ON __SCHEMA__.events (id) WHERE routed_at IS NULL;

-- One delivery per event x action: the unit that is claimed, attempted, retried and dead-lettered.
CREATE TABLE __SCHEMA__.deliveries (
  id            uuid        PRIMARY KEY,
  event_id      bigint      NOT NULL,
  observer      text        NOT NULL,
  action_index  integer     NOT NULL,
  status        text        NOT NULL CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'dead')),
  attempts      integer     NOT NULL DEFAULT 0,
  run_at        timestamptz NOT NULL DEFAULT now(),
  locked_by     text,
  locked_until  timestamptz,
  depends_on    uuid,
  -- observers with ordering = "per_key": one delivery per key at a time, in event order
  ordering_key  text,
  -- batched actions: observer:action, and the batch a delivery was claimed into (its wire id)
  batch_key     text,
  batch_id      uuid,
  -- attempts made before the last replay: max_attempts counts from here
  attempt_base  integer     NOT NULL DEFAULT 0,
  replayed_at   timestamptz,
  -- a dead letter not yet written to a DLQ backend outside this database (NATS, file)
  dead_letter   jsonb,
  last_status   integer,
  last_error    text,
  reason        text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);
CREATE INDEX deliveries_ready_idx ON __SCHEMA__.deliveries (run_at) WHERE status = 'pending' AND batch_key IS NULL;
CREATE INDEX deliveries_batch_fill_idx ON __SCHEMA__.deliveries (batch_key, event_id)
  WHERE status = 'pending' AND batch_id IS NULL;
CREATE INDEX deliveries_batch_idx ON __SCHEMA__.deliveries (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX deliveries_lease_idx ON __SCHEMA__.deliveries (locked_until) WHERE status = 'running';
CREATE INDEX deliveries_waiting_idx ON __SCHEMA__.deliveries (depends_on) WHERE status = 'waiting';
CREATE INDEX deliveries_event_idx ON __SCHEMA__.deliveries (event_id);
CREATE INDEX deliveries_ordering_idx ON __SCHEMA__.deliveries (ordering_key, event_id)
  WHERE ordering_key IS NOT NULL AND status IN ('pending', 'running', 'waiting');
CREATE INDEX deliveries_dead_letter_idx ON __SCHEMA__.deliveries (updated_at) WHERE dead_letter IS NOT NULL;
CREATE INDEX deliveries_finished_idx ON __SCHEMA__.deliveries (finished_at) WHERE status IN ('succeeded', 'dead');

-- Live dispatcher processes, for sharing the rate limit budget (and for operators to see).
-- A process that holds its liveness lock (a session advisory lock on its own connection, keyed
-- by hashtextextended('fraiseql.worker:<schema>:<id>', 0)) is known dead as soon as the server
-- frees that lock, without waiting for its heartbeat to grow old.
CREATE TABLE __SCHEMA__.workers (
  id            text        PRIMARY KEY,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  liveness_lock boolean     NOT NULL DEFAULT false
);

-- Delivery history: one row per HTTP attempt.
CREATE TABLE __SCHEMA__.delivery_attempts (
  delivery_id      uuid        NOT NULL,
  attempt          integer     NOT NULL,
  started_at       timestamptz NOT NULL,
  duration_ms      double precision NOT NULL,
  status           integer,
  outcome          text        NOT NULL,
  error            text,
  response_excerpt text,
  PRIMARY KEY (delivery_id, attempt)
);

-- Whether a dispatcher is idle, waiting to be woken. The capture trigger sends a NOTIFY only
-- then: under load the flag is false and a write pays no NOTIFY (which would serialise commits).
CREATE TABLE __SCHEMA__.dispatch_state (
  id       integer PRIMARY KEY CHECK (id = 1),
  sleeping boolean NOT NULL DEFAULT false
);
INSERT INTO __SCHEMA__.dispatch_state (id) VALUES (1);

-- Generic capture trigger function; the entity name is the trigger's first argument.
CREATE FUNCTION __SCHEMA__.capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  o jsonb;
  n jsonb;
  ch text[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    n := to_jsonb(NEW);
  ELSIF TG_OP = 'UPDATE' THEN
    o := to_jsonb(OLD);
    n := to_jsonb(NEW);
    SELECT coalesce(array_agg(e.key ORDER BY e.key), '{}') INTO ch
      FROM jsonb_each(n) AS e WHERE e.value IS DISTINCT FROM o -> e.key;
  ELSE
    o := to_jsonb(OLD);
  END IF;
  INSERT INTO __SCHEMA__.events (entity, table_schema, table_name, op, old_row, new_row, changed)
  VALUES (TG_ARGV[0], TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, o, n, ch);
  IF (SELECT sleeping FROM __SCHEMA__.dispatch_state WHERE id = 1) THEN
    PERFORM pg_notify(__WAKE_CHANNEL__, '');
  END IF;
  RETURN NULL;
END
$fn$;
