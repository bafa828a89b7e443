-- Schoology syncs: the sync log that SONIS's "LMS Sync Log Pruning" prunes, and the class
-- periods and combined gradebooks that Focus's "Sync Recent Course Period Changes" keeps.

-- What each LMS sync did to each record, one row per record and action: created, updated,
-- deactivated, deleted, refused (with the LMS's message) or linked. A run's rows carry its
-- occurrence id; a repeated occurrence logs nothing twice (the unique key). Job state, not SIS
-- data; "Notifier: LMS Sync Log Pruning" deletes rows older than its retention.
CREATE TABLE sis.lms_sync_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system         text NOT NULL,
    job_id         text NOT NULL,
    run_id         text NOT NULL,
    occurrence_id  text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('user', 'course', 'section', 'enrolment')),
    sis_key        text NOT NULL,
    lms_id         text,
    action         text NOT NULL CHECK (action IN ('created', 'updated', 'deactivated', 'deleted', 'refused', 'linked')),
    detail         text NOT NULL DEFAULT '',
    logged_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (occurrence_id, kind, sis_key, action)
);
CREATE INDEX lms_sync_log_logged ON sis.lms_sync_log (logged_at);
CREATE INDEX lms_sync_log_job ON sis.lms_sync_log (job_id, logged_at DESC);

-- One row per pruning occurrence, so a repeated occurrence prunes and mails once.
CREATE TABLE sis.lms_sync_log_prunes (
    occurrence_id  text PRIMARY KEY,
    job_id         text NOT NULL,
    cutoff         timestamptz NOT NULL,
    deleted        integer NOT NULL,
    pruned_at      timestamptz NOT NULL DEFAULT now()
);

-- The class period a section meets in (Focus's course period: "3", "A-block"); NULL when the
-- school does not schedule by period.
ALTER TABLE sis.sections ADD COLUMN period text;

-- Gradebooks a teacher combined by period: the sections of one term, one lead faculty member
-- and one period that share a gradebook. The primary section's LMS section holds the combined
-- gradebook; the other members' students are enrolled there too.
CREATE TABLE sis.combined_gradebooks (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    term_id            bigint NOT NULL REFERENCES sis.terms (id) ON DELETE CASCADE,
    faculty_id         bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    period             text NOT NULL,
    primary_section_id bigint NOT NULL REFERENCES sis.sections (id) ON DELETE CASCADE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (term_id, faculty_id, period)
);
CREATE TABLE sis.combined_gradebook_sections (
    gradebook_id  bigint NOT NULL REFERENCES sis.combined_gradebooks (id) ON DELETE CASCADE,
    section_id    bigint NOT NULL UNIQUE REFERENCES sis.sections (id) ON DELETE CASCADE,
    added_at      timestamptz NOT NULL DEFAULT now(),
    added_by_run  text,
    PRIMARY KEY (gradebook_id, section_id)
);
