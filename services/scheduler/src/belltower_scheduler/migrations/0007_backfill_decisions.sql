-- Catch-up a person decides (catch-up policy "ask"): missed occurrences wait as 'awaiting' until
-- someone answers `belltower jobs decide` (they become pending or skipped) or the decision
-- expires (skipped, cause decision_expired). Backfilled occurrences carry trigger 'backfill'
-- (the trigger column has no CHECK), and who asked in requested_by / requested_from.
ALTER TABLE scheduler.occurrences DROP CONSTRAINT occurrences_state_check;
ALTER TABLE scheduler.occurrences ADD CONSTRAINT occurrences_state_check
    CHECK (state IN ('pending', 'dispatched', 'missed', 'coalesced', 'skipped', 'waiting', 'delayed', 'lost', 'awaiting'));

-- The banner on the jobs list, a decision and its expiry each read only the awaiting rows.
CREATE INDEX occurrences_awaiting ON scheduler.occurrences (job_id, scheduled_for)
    WHERE state = 'awaiting';
