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
-- The state filter (active, paused) with the default title order; the state sort itself also
-- depends on which types the workers provide, so it is a top-N sort over the matching jobs.
CREATE INDEX jobs_by_state ON scheduler.jobs (paused, lower(title), id);

-- A large import arrives in batches (staging.py): each batch's checked jobs wait here under the
-- import's id, then one transaction applies them all (or the import is discarded), so an
-- import of 100,000 jobs is still all or nothing without one NATS message holding them.
-- The primary key refuses the same job id twice in one import, across batches.
CREATE TABLE scheduler.import_staging (
    import_id         uuid NOT NULL,
    action            text NOT NULL CHECK (action IN ('create', 'change', 'unchanged')),
    doc_index         integer NOT NULL,
    staged_at         timestamptz NOT NULL DEFAULT now(),
    id                uuid NOT NULL,
    title             text NOT NULL,
    type              text NOT NULL,
    pool              text NOT NULL,
    params            jsonb NOT NULL,
    schedule          jsonb NOT NULL,
    priority          integer NOT NULL,
    paused            boolean NOT NULL,
    keep_history_days integer,
    timeout_s         double precision,
    next_run_at       timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    policy            jsonb NOT NULL,
    result_mail       jsonb,
    PRIMARY KEY (import_id, id)
);
CREATE INDEX import_staging_age ON scheduler.import_staging (staged_at);
