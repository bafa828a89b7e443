CREATE TABLE scheduler.jobs (
    id                uuid PRIMARY KEY,
    title             text NOT NULL,
    type              text NOT NULL,
    pool              text NOT NULL,
    params            jsonb NOT NULL DEFAULT '{}',
    schedule          jsonb NOT NULL,
    priority          integer NOT NULL DEFAULT 500,
    paused            boolean NOT NULL DEFAULT false,
    keep_history_days integer,
    timeout_s         double precision,
    next_run_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every occurrence the scheduler planned and what became of it.
CREATE TABLE scheduler.occurrences (
    id            uuid PRIMARY KEY,
    job_id        uuid NOT NULL,
    scheduled_for timestamptz NOT NULL,
    priority      integer NOT NULL,
    trigger       text NOT NULL,
    requested_by  text,
    state         text NOT NULL CHECK (state IN ('pending', 'dispatched', 'missed', 'coalesced', 'skipped')),
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
);

CREATE INDEX occurrences_job_time ON scheduler.occurrences (job_id, scheduled_for);
CREATE INDEX occurrences_pending ON scheduler.occurrences (scheduled_for) WHERE state = 'pending';
CREATE INDEX occurrences_created ON scheduler.occurrences (created_at);
