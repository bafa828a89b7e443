-- Roster syncs to learning management systems (Moodle web services; Blackboard Learn later),
-- and the safety hold of every roster sync. Job state, not SIS data: a school mapping its own
-- SIS onto the reference tables leaves these alone.

-- A roster sync held by its safety thresholds: what it would have changed (counts per kind and
-- a sample), and a fingerprint of that change set. A release in history lets one later run of
-- the job send it, only if it computes the same fingerprint; applied_by_run is that run, so
-- the held change is applied once, whatever is released or retried.
CREATE TABLE sis.roster_holds (
    run_id          text PRIMARY KEY,
    job_id          text NOT NULL,
    occurrence_id   text NOT NULL,
    job_type        text NOT NULL,
    fingerprint     text NOT NULL,
    counts          jsonb NOT NULL,
    sample          jsonb NOT NULL DEFAULT '[]',
    held_at         timestamptz NOT NULL DEFAULT now(),
    applied_by_run  text,
    applied_at      timestamptz
);
CREATE INDEX roster_holds_job ON sis.roster_holds (job_id, held_at DESC);

-- What an LMS sync last made the LMS hold, per job: each user, course (section) and enrolment by its SIS
-- key, the LMS's own id for it and a digest of the values sent. The next run compares with it
-- (what changed, what is gone) and its safety hold counts against it.
CREATE TABLE sis.lms_sync_records (
    job_id       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('user', 'course', 'section', 'enrolment')),
    sis_key      text NOT NULL,
    lms_id       text,
    digest       text NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, kind, sis_key)
);

-- Links from the SIS's courses (per term) to an LMS's own course ids, as a load from the LMS
-- found them (Blackboard: the course's primary id, e.g. _123_1). People's LMS ids go where
-- every outside id of a person goes, sis.person_external_ids (system 'blackboard').
CREATE TABLE sis.lms_course_links (
    system       text NOT NULL,
    course_id    bigint NOT NULL REFERENCES sis.courses (id) ON DELETE CASCADE,
    term_id      bigint NOT NULL REFERENCES sis.terms (id) ON DELETE CASCADE,
    lms_id       text NOT NULL,
    linked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system, course_id, term_id),
    UNIQUE (system, lms_id)
);
