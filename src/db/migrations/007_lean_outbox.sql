-- The row the capture trigger writes gets cheaper. Every captured change pays for it in the
-- writing transaction (docs/performance.md, "INSERT with the capture trigger"):
-- - the CHECK on events.op goes: PostgreSQL rebuilds a CHECK expression from its stored text for
--   every INSERT statement, and the trigger's INSERT is one statement per captured row; op is
--   written by the capture function alone;
-- - events.table_schema and events.table_name go: nothing reads them (the entity names the
--   table), and they were 20 to 40 bytes of every row and of its WAL.
ALTER TABLE __SCHEMA__.events DROP CONSTRAINT IF EXISTS events_op_check;
ALTER TABLE __SCHEMA__.events DROP COLUMN table_schema, DROP COLUMN table_name;

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
  INSERT INTO __SCHEMA__.events (entity, op, old_row, new_row, changed)
  VALUES (TG_ARGV[0], TG_OP, o, n, ch);
  IF pg_sequence_last_value('__SCHEMA__.dispatch_sleeping') > date_part('epoch', now()) THEN
    PERFORM pg_notify(__WAKE_CHANNEL__, '');
  END IF;
  RETURN NULL;
END
$fn$;
