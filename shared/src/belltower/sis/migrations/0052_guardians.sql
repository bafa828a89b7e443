-- Guardians of students: parents, legal guardians and other relatives a school records for a
-- student (in a college, those of its minors). Rosters send them as the student's agents
-- (OneRoster agentSourcedIds and a parent, guardian or relative role). A guardian is not a
-- person of the school, so they have their own table and SIS id (unique among guardians; the
-- demo school's start with G, apart from its people's).

CREATE TABLE sis.guardians (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sis_id      text NOT NULL UNIQUE,
    first_name  text NOT NULL,
    last_name   text NOT NULL,
    email       text,
    phone       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sis.student_guardians (
    student_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    guardian_id  bigint NOT NULL REFERENCES sis.guardians (id) ON DELETE CASCADE,
    relationship text NOT NULL CHECK (relationship IN ('parent', 'guardian', 'relative')),
    is_primary   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (student_id, guardian_id)
);
CREATE INDEX student_guardians_guardian ON sis.student_guardians (guardian_id);
