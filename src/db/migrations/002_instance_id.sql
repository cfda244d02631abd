-- A random identity of this installation. Delivery ids are derived from it with the event id,
-- the observer and the action index, so an event routed again (its first routing write did not
-- commit, after its requests were already sent) gets the same ids, and receivers can deduplicate;
-- two installations never share ids.
ALTER TABLE __SCHEMA__.dispatch_state ADD COLUMN instance_id uuid NOT NULL DEFAULT gen_random_uuid();
