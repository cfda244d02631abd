-- Which action a delivery is for, beyond its position in the observer's actions: a short hash of
-- the action's method and url template as configured when the delivery was routed, and how many
-- actions the observer had (actionSig in src/observers/runtime.ts). When the actions of an
-- observer are reordered, or one is inserted or removed, while deliveries are queued, each still
-- goes to its own action (found by this signature), or to none if it was removed, never to
-- whatever action now has its index. Rows routed before this migration have none and keep the
-- index.
ALTER TABLE __SCHEMA__.deliveries ADD COLUMN action_sig text;
