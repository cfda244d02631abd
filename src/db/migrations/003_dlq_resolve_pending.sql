-- A replayed delivery that succeeded must leave its DLQ entry. With a backend outside this
-- database (NATS, file) the entry is resolved after the settling transaction commits; until that
-- succeeds the delivery is marked here, and the dispatcher's housekeeping tries again.
ALTER TABLE __SCHEMA__.deliveries ADD COLUMN dlq_resolve_pending boolean NOT NULL DEFAULT false;
CREATE INDEX deliveries_dlq_resolve_idx ON __SCHEMA__.deliveries (updated_at) WHERE dlq_resolve_pending;
