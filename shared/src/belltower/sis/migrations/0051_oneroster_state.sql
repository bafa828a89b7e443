-- What a OneRoster CSV export job last sent, so its next delta holds only what changed since
-- (and tobedeleted rows for what disappeared). One snapshot per job and occurrence; a job keeps
-- its latest snapshot and the one before it, so a repeated occurrence is computed against the
-- same base and writes the same files. Job state, not SIS data: a school mapping its own SIS
-- onto these tables leaves these two alone.

CREATE TABLE sis.oneroster_snapshots (
    job_id        text NOT NULL,
    occurrence_id text NOT NULL,
    taken_for     timestamptz NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('bulk', 'delta')),
    saved_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, occurrence_id)
);
CREATE INDEX oneroster_snapshots_latest ON sis.oneroster_snapshots (job_id, taken_for DESC);

-- Each record sent, by file and sourcedId: its values (the columns after dateLastModified, in
-- the binding's order) and when they last changed.
CREATE TABLE sis.oneroster_records (
    job_id        text NOT NULL,
    occurrence_id text NOT NULL,
    file          text NOT NULL,
    sourced_id    text NOT NULL,
    record        text[] NOT NULL,
    modified_at   timestamptz NOT NULL,
    PRIMARY KEY (job_id, occurrence_id, file, sourced_id),
    FOREIGN KEY (job_id, occurrence_id) REFERENCES sis.oneroster_snapshots (job_id, occurrence_id)
        ON DELETE CASCADE
);
