-- The idle flag the capture trigger reads on every captured row moves from
-- dispatch_state.sleeping to a sequence, and expires: its value is the time (unix seconds) until
-- which an idle dispatcher asks writers to NOTIFY; 0 when none does. An idle dispatcher renews it
-- with every heartbeat, so one that was killed while idle stops costing writers a NOTIFY (which
-- serialises commits) a few seconds later, without another process to lower it.
-- PL/pgSQL evaluates pg_sequence_last_value() as a plain function call, without starting a query
-- on a table: the flag check no longer shows in the single-row INSERT rate (docs/performance.md).
-- setval() is not transactional: a dispatcher's change is seen by the next write at once.
CREATE SEQUENCE __SCHEMA__.dispatch_sleeping MINVALUE 0 START 0;
SELECT setval('__SCHEMA__.dispatch_sleeping', 0, true);
ALTER TABLE __SCHEMA__.dispatch_state DROP COLUMN sleeping;

CREATE OR REPLACE FUNCTION __SCHEMA__.capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
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
  IF pg_sequence_last_value('__SCHEMA__.dispatch_sleeping') > date_part('epoch', now()) THEN
    PERFORM pg_notify(__WAKE_CHANNEL__, '');
  END IF;
  RETURN NULL;
END
$fn$;
