-- What the school's nightly calculation jobs read and write (integration-worker, calc.*):
-- the grade scale and course weights GPAs are computed from, the academic record they are
-- written back to, daily attendance derived from class marks, the attendance summary of each
-- student's term, detentions, attendance letters already queued, graduation requirements and
-- their summary, immunization requirements and each student's compliance.
-- A "school" for these jobs is a division (people.division_id): each job works one
-- transaction per division.

-- Grade points of each letter. points NULL: the grade does not count in a GPA (W, I, P, NP).
-- A school maps its own scale over this one; these are the common 4.0 values.
-- attempted false: the course does not count as attempted either (withdrawn, incomplete).
CREATE TABLE sis.grade_scale (
    grade        text PRIMARY KEY,
    points       numeric(4, 2) CHECK (points IS NULL OR points >= 0),
    earns_credit boolean NOT NULL DEFAULT true,
    attempted    boolean NOT NULL DEFAULT true
);
INSERT INTO sis.grade_scale (grade, points, earns_credit, attempted) VALUES
    ('A', 4.0, true, true), ('A-', 3.7, true, true), ('B+', 3.3, true, true), ('B', 3.0, true, true),
    ('B-', 2.7, true, true), ('C+', 2.3, true, true), ('C', 2.0, true, true), ('C-', 1.7, true, true),
    ('D+', 1.3, true, true), ('D', 1.0, true, true), ('D-', 0.7, true, true), ('F', 0.0, false, true),
    ('P', NULL, true, true), ('NP', NULL, false, true), ('W', NULL, false, false), ('I', NULL, false, false);

-- Points added to a graded course's points in a weighted GPA (honors 0.5, AP/IB 1.0), never to F.
ALTER TABLE sis.courses ADD COLUMN gpa_weight numeric(3, 2) NOT NULL DEFAULT 0 CHECK (gpa_weight >= 0);

-- The student's academic record per term, after Ed-Fi's StudentAcademicRecord: the session's
-- and the cumulative credits and GPAs (unweighted and weighted) and the class ranking among the
-- students of the same division and level with a record for the term (competition ranking:
-- equal GPAs share a rank and the next rank skips, "1224").
CREATE TABLE sis.academic_records (
    person_id                    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id                      bigint NOT NULL REFERENCES sis.terms (id) ON DELETE CASCADE,
    session_attempted_credits    numeric(7, 2) NOT NULL,
    session_earned_credits       numeric(7, 2) NOT NULL,
    session_gpa_credits          numeric(7, 2) NOT NULL,
    session_gpa_unweighted       numeric(5, 3),
    session_gpa_weighted         numeric(5, 3),
    cumulative_attempted_credits numeric(8, 2) NOT NULL,
    cumulative_earned_credits    numeric(8, 2) NOT NULL,
    cumulative_gpa_credits       numeric(8, 2) NOT NULL,
    cumulative_gpa_unweighted    numeric(5, 3),
    cumulative_gpa_weighted      numeric(5, 3),
    class_rank                   integer CHECK (class_rank IS NULL OR class_rank >= 1),
    class_size                   integer,
    class_percentile             numeric(5, 2),
    rank_basis                   text CHECK (rank_basis IN ('weighted', 'unweighted')),
    calculated_at                timestamptz NOT NULL DEFAULT now(),
    occurrence_id                text,
    PRIMARY KEY (person_id, term_id)
);
CREATE INDEX academic_records_term ON sis.academic_records (term_id);

-- The school preference Calculate Class Rank and GPA ranks on by default (weighted, unweighted).
INSERT INTO sis.school_preferences (key, value) VALUES ('class_rank_basis', 'weighted')
    ON CONFLICT (key) DO NOTHING;

-- Daily attendance, derived from the day's class marks by Recalculate Daily Attendance.
CREATE TABLE sis.attendance_days (
    person_id       bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    on_date         date NOT NULL,
    periods         integer NOT NULL CHECK (periods > 0),
    periods_present integer NOT NULL,
    periods_tardy   integer NOT NULL,
    periods_absent  integer NOT NULL,
    periods_excused integer NOT NULL,
    status          text NOT NULL CHECK (status IN ('present', 'absent', 'excused')),
    calculated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, on_date)
);
CREATE INDEX attendance_days_date ON sis.attendance_days (on_date);

-- The attendance fields of a student's enrollment in a term (Focus's student enrollment
-- fields Days Enrolled, Days Present, Days Excused, Days Unexcused), from attendance_days.
CREATE TABLE sis.attendance_summaries (
    person_id      bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id        bigint NOT NULL REFERENCES sis.terms (id) ON DELETE CASCADE,
    days_enrolled  integer NOT NULL,
    days_present   integer NOT NULL,
    days_excused   integer NOT NULL,
    days_unexcused integer NOT NULL,
    through_on     date NOT NULL,
    calculated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, term_id)
);

-- The detention list. A detention a job created carries its job id and the key of the
-- threshold it met (person, term, threshold), so a re-run adds none.
CREATE TABLE sis.detentions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id       bigint REFERENCES sis.terms (id),
    reason        text NOT NULL,
    tardies       integer,
    assigned_on   date NOT NULL,
    served_on     date,
    source_job_id text,
    source_key    text,
    occurrence_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_job_id, source_key)
);
CREATE INDEX detentions_person ON sis.detentions (person_id);

-- Attendance letters queued by Attendance Daily Triggers: each (job, student, term, trigger,
-- threshold) once, with the queue rows that carry it.
CREATE TABLE sis.attendance_letters (
    job_id        text NOT NULL,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id       bigint NOT NULL REFERENCES sis.terms (id) ON DELETE CASCADE,
    trigger       text NOT NULL CHECK (trigger IN ('daily', 'period')),
    threshold     integer NOT NULL,
    count         integer NOT NULL,
    queue_ids     bigint[] NOT NULL DEFAULT '{}',
    occurrence_id text NOT NULL,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, person_id, term_id, trigger, threshold)
);

-- Graduation requirements: credits a student of a level must earn, in total (department NULL)
-- or in one department's courses.
CREATE TABLE sis.graduation_requirements (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    level_id         bigint NOT NULL REFERENCES sis.levels (id),
    code             text NOT NULL,
    name             text NOT NULL,
    department_id    bigint REFERENCES sis.departments (id),
    credits_required numeric(6, 2) NOT NULL CHECK (credits_required > 0),
    UNIQUE (level_id, code)
);

-- Populate Graduation Requirements Summary's table: per student and requirement.
CREATE TABLE sis.grad_requirements_summary (
    person_id           bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    requirement_id      bigint NOT NULL REFERENCES sis.graduation_requirements (id) ON DELETE CASCADE,
    credits_required    numeric(6, 2) NOT NULL,
    credits_earned      numeric(7, 2) NOT NULL,
    credits_in_progress numeric(7, 2) NOT NULL,
    met                 boolean NOT NULL,
    calculated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, requirement_id)
);

-- Immunizations every active student must have (kind as in sis.immunizations), and each
-- student's compliance: missing or expired kinds, as of the run.
CREATE TABLE sis.immunization_requirements (
    kind        text PRIMARY KEY,
    name        text NOT NULL
);
INSERT INTO sis.immunization_requirements (kind, name) VALUES
    ('MMR', 'Measles, mumps, rubella'), ('HEPB', 'Hepatitis B'), ('TDAP', 'Tetanus, diphtheria, pertussis'),
    ('MENACWY', 'Meningococcal conjugate');

CREATE TABLE sis.immunization_compliance (
    person_id     bigint PRIMARY KEY REFERENCES sis.people (id) ON DELETE CASCADE,
    compliant     boolean NOT NULL,
    missing       text[] NOT NULL DEFAULT '{}',
    expired       text[] NOT NULL DEFAULT '{}',
    checked_on    date NOT NULL,
    calculated_at timestamptz NOT NULL DEFAULT now()
);
