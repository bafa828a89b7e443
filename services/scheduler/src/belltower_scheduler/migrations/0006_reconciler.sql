-- The reconciler (reconcile.py): occurrences the broker lost are published again, up to a bound,
-- then recorded 'lost' with the reason. recovery_attempts counts the republications,
-- recovery_seq is the BELLTOWER_DUE sequence of the latest copy (looked up to tell an occurrence
-- still queued from one lost again), recovered_at when that copy was published.
ALTER TABLE scheduler.occurrences DROP CONSTRAINT occurrences_state_check;
ALTER TABLE scheduler.occurrences ADD CONSTRAINT occurrences_state_check
    CHECK (state IN ('pending', 'dispatched', 'missed', 'coalesced', 'skipped', 'waiting', 'delayed', 'lost'));

ALTER TABLE scheduler.occurrences
    ADD COLUMN recovery_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN recovery_seq      bigint,
    ADD COLUMN recovered_at      timestamptz;
