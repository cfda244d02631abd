-- Deliveries are found by their event through the primary key. A delivery id (a version 7 UUID,
-- see deliveryId in src/observers/runtime.ts) begins with its event's capture time in
-- milliseconds and the event id modulo 2^30, so the ids of one event's deliveries lie in one
-- range of the primary key's index. The index on event_id, into which every new row version of a
-- delivery inserted an entry (about 5 µs of the server's CPU per delivery), is kept only for ids
-- of other layouts: the version 8 ids written before migration 005, and any other.

-- The first and the last id an event's deliveries can have: 80 bits of prefix (time, version,
-- counter, variant), then all zeros or all ones.
CREATE FUNCTION __SCHEMA__.event_delivery_id_bound(event_id bigint, captured timestamptz, upper boolean)
  RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
  SELECT (lpad(to_hex(floor(extract(epoch FROM captured) * 1000)::bigint), 12, '0')
          || lpad(to_hex(28672 | ((event_id % 1073741824)::int >> 18)), 4, '0')
          || lpad(to_hex(8388608 | (((event_id % 1073741824)::int & 262143) << 4)
                         | CASE WHEN upper THEN 15 ELSE 0 END), 6, '0')
          || CASE WHEN upper THEN 'ffffffffff' ELSE '0000000000' END)::uuid
$fn$;

-- The deliveries of one event (its id and capture time): a range of the primary key for the
-- version 7 ids, the partial index below for the others.
CREATE FUNCTION __SCHEMA__.event_deliveries(event_id bigint, captured timestamptz)
  RETURNS SETOF __SCHEMA__.deliveries LANGUAGE sql STABLE AS $fn$
  SELECT d.* FROM __SCHEMA__.deliveries d
   WHERE d.id BETWEEN __SCHEMA__.event_delivery_id_bound($1, $2, false)
                  AND __SCHEMA__.event_delivery_id_bound($1, $2, true)
     AND d.event_id = $1
  UNION ALL
  SELECT d.* FROM __SCHEMA__.deliveries d
   WHERE d.event_id = $1 AND get_byte(uuid_send(d.id), 6) >> 4 <> 7
$fn$;

CREATE INDEX deliveries_event_other_idx ON __SCHEMA__.deliveries (event_id)
  WHERE get_byte(uuid_send(id), 6) >> 4 <> 7;
DROP INDEX __SCHEMA__.deliveries_event_idx;
