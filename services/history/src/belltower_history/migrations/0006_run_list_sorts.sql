-- Keyset pages of runs (listing.py): each sort's expressions ending in occurrence_id, so a page
-- deep in a million runs is one index range read. They take over from the time indexes of
-- 0001, which ordered by time alone (a keyset needs the tie-breaking id in the index too).
CREATE INDEX runs_time_id ON history.runs (scheduled_for, occurrence_id);
CREATE INDEX runs_job_time_id ON history.runs (job_id, scheduled_for, occurrence_id);
CREATE INDEX runs_status_time_id ON history.runs (status, scheduled_for, occurrence_id);
CREATE INDEX runs_by_finished ON history.runs (
    (COALESCE(finished_at, 'infinity'::timestamptz)), occurrence_id
);
CREATE INDEX runs_by_duration ON history.runs ((COALESCE(duration_ms, -1)), occurrence_id);
DROP INDEX history.runs_time;
DROP INDEX history.runs_job_time;
DROP INDEX history.runs_status_time;
