-- One row per occurrence that ran: started, then finished (status, output).
CREATE TABLE history.runs (
    occurrence_id    uuid PRIMARY KEY,
    run_id           uuid NOT NULL UNIQUE,
    job_id           uuid NOT NULL,
    job_type         text NOT NULL,
    job_title        text NOT NULL,
    pool             text NOT NULL,
    status           text NOT NULL,
    trigger          text NOT NULL,
    requested_by     text,
    priority         integer NOT NULL,
    scheduled_for    timestamptz NOT NULL,
    dispatched_at    timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    duration_ms      integer,
    attempt          integer NOT NULL DEFAULT 1,
    worker           text NOT NULL DEFAULT '',
    summary          text NOT NULL DEFAULT '',
    output_text      text NOT NULL DEFAULT '',
    output_html      text,
    error            text,
    trace_id         text,
    progress_done    integer,
    progress_total   integer,
    progress_message text,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX runs_job_time ON history.runs (job_id, scheduled_for DESC);
CREATE INDEX runs_time ON history.runs (scheduled_for DESC);
CREATE INDEX runs_status_time ON history.runs (status, scheduled_for DESC);
CREATE INDEX runs_finished ON history.runs (finished_at);
