-- Releases of held runs (status 'held': a roster sync over its safety thresholds). One row per
-- held run, so releasing it twice finds the first release; release_run_id is the run the
-- console started to apply it.
CREATE TABLE history.run_releases (
    run_id          uuid PRIMARY KEY,
    job_id          uuid NOT NULL,
    released_by     text,
    released_from   text,
    released_at     timestamptz NOT NULL DEFAULT now(),
    release_run_id  uuid
);
CREATE INDEX run_releases_job ON history.run_releases (job_id, released_at DESC);
