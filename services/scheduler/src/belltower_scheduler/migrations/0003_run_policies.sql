-- Run policies (catch-up, overlap, retries, chaining) and what the ledger needs to explain them.
ALTER TABLE scheduler.jobs ADD COLUMN policy jsonb NOT NULL DEFAULT '{}';

-- 'waiting': held back by the overlap policy "buffer" until the run in flight finishes;
-- 'delayed': a chained occurrence waiting for its delay to pass.
ALTER TABLE scheduler.occurrences DROP CONSTRAINT occurrences_state_check;
ALTER TABLE scheduler.occurrences ADD CONSTRAINT occurrences_state_check
    CHECK (state IN ('pending', 'dispatched', 'missed', 'coalesced', 'skipped', 'waiting', 'delayed'));

ALTER TABLE scheduler.occurrences
    ADD COLUMN cause          text,         -- machine-readable reason: overlap, paused, end_passed, ...
    ADD COLUMN requested_from text,         -- run now: the address the request came from
    ADD COLUMN chained_from   uuid,         -- chained: the upstream occurrence
    ADD COLUMN run_status     text,         -- from the run events: running, succeeded, failed, ...
    ADD COLUMN run_error      text,
    ADD COLUMN run_finished_at timestamptz;

-- Occurrences held back by the overlap and chaining policies, found again at start. (Runs in
-- flight are found through occurrences_created instead: an index of them would cost every
-- dispatch an index entry.)
CREATE INDEX occurrences_held ON scheduler.occurrences (scheduled_for)
    WHERE state IN ('waiting', 'delayed');

-- Who paused a job and when, and who resumed it: `belltower jobs why` quotes it.
CREATE TABLE scheduler.pauses (
    job_id       uuid NOT NULL,
    paused_at    timestamptz NOT NULL,
    paused_by    text,
    paused_from  text,
    resumed_at   timestamptz,
    resumed_by   text,
    resumed_from text,
    PRIMARY KEY (job_id, paused_at)
);
