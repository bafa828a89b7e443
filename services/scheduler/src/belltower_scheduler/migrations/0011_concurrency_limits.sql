-- Limits per target (limits.py): a job with a concurrency key runs at most its limit of the key's
-- runs at once, across every job with that key and every scheduler replica. Each occurrence of
-- such a job has a row here from when it is planned until its run finishes: admitted_at set
-- while it holds one of the key's slots (pending or dispatched in the ledger, not finished),
-- NULL while it waits (the ledger says waiting, cause concurrency). Jobs without a key never
-- write here, and finished rows are deleted, so the table holds only what runs or waits now.
-- The ledger row itself is unchanged: no column or index is added to scheduler.occurrences, so
-- its run-status updates stay heap-only (0010).
CREATE TABLE scheduler.concurrency_slots (
    occurrence_id uuid PRIMARY KEY,
    key           text NOT NULL,
    job_id        uuid NOT NULL,
    max_running   integer NOT NULL CHECK (max_running > 0),
    priority      integer NOT NULL,
    scheduled_for timestamptz NOT NULL,
    queued_at     timestamptz NOT NULL,
    admitted_at   timestamptz
);
-- Per key: the slots held (count) and the waiting ones in release order.
CREATE INDEX concurrency_slots_key ON scheduler.concurrency_slots
    (key, admitted_at NULLS FIRST, priority DESC, scheduled_for);
