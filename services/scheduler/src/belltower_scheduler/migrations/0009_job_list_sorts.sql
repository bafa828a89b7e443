-- Keyset pages of jobs (listing.py): one index per sort the Jobs page and `GET /api/v1/jobs`
-- offer, on the same expressions in the same order, so any page is one index range read.
-- next_run_at is deliberately not indexed: the planner rewrites it on every run, and an index
-- on it would make each of those updates write the index too (no HOT update); that sort is a
-- top-N sort over the jobs instead.
CREATE INDEX jobs_by_title ON scheduler.jobs (lower(title), id);
CREATE INDEX jobs_by_type ON scheduler.jobs (type, lower(title), id);
CREATE INDEX jobs_by_priority ON scheduler.jobs (priority, lower(title), id);
CREATE INDEX jobs_by_schedule ON scheduler.jobs (
    (schedule -> 'rule' ->> 'kind'), left((schedule -> 'rule')::text, 200), id
);
CREATE INDEX jobs_by_state ON scheduler.jobs (paused, type, lower(title), id);
