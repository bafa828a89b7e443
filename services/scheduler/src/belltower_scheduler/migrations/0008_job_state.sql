-- Job state (jobstate.py): pause notes, failure streaks, expected durations and overdue runs.

-- Why a job was paused: the note of whoever paused it, or Belltower's own reason
-- ("max runs reached", "paused after 5 consecutive failures").
ALTER TABLE scheduler.pauses ADD COLUMN note text;

-- When the run of an occurrence started (from its started event, else its finished one): the
-- expected duration is the p95 of run_finished_at - run_started_at over the latest succeeded runs.
-- overdue_at: when the reconciler raised belltower.run.overdue for it (once per occurrence).
ALTER TABLE scheduler.occurrences
    ADD COLUMN run_started_at timestamptz,
    ADD COLUMN overdue_at     timestamptz;

-- A job's current run of consecutive failures. Only a ledger row's first finished status counts
-- (the UPDATE that records it returns it once), so a redelivered or replayed finished event
-- cannot count twice; last_occurrence_id is the run that last changed it. alerted: the failing
-- alert went out for this streak (the first success after it sends the recovery notice).
-- No foreign key (like scheduler.pauses): deleting a job deletes its row (Store.delete_job).
CREATE TABLE scheduler.failure_streaks (
    job_id             uuid PRIMARY KEY,
    streak             integer NOT NULL CHECK (streak > 0),
    first_failed_at    timestamptz NOT NULL,
    last_occurrence_id uuid NOT NULL,
    alerted            boolean NOT NULL DEFAULT false
);

-- No index on run_status for the expected duration: one would make every run event's UPDATE of
-- the ledger a non-HOT update touching each index. The p95 walks occurrences_job_time backwards
-- from the newest occurrence until it has its sample of succeeded runs.
