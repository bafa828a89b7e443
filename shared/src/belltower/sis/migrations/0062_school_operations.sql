-- K-12 school operations (Focus's scheduled jobs, integration-worker enrollment.*): school years,
-- each school's grade levels, the student's school enrollment record (Focus's student_enrollment)
-- with its next school, rolling retention, zoned school and Florida attendance fields, the
-- district's address catalog that zones an address to a school, and the queue of automatic
-- course requests with the course requests made from it. Additive (docs/sis-schema.md).
-- A school is a division (sis.divisions), as for the calculation jobs.

-- School years: year 2026 is the 2026-27 school year. The default one is the school
-- preference 'default_school_year' (else the year whose dates hold the run's day).
CREATE TABLE sis.school_years (
    year        integer PRIMARY KEY CHECK (year BETWEEN 1900 AND 2999),
    name        text NOT NULL,
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    CHECK (ends_on > starts_on)
);

-- A school's grade levels (Setup > Grade Levels). next_code: the grade a promoted student rolls
-- into (NULL: the school's last grade). used_for_zoning / can_roll_into: Set Next School only
-- sets a next school whose next grade is marked with both.
CREATE TABLE sis.grade_levels (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    division_id    bigint NOT NULL REFERENCES sis.divisions (id) ON DELETE CASCADE,
    code           text NOT NULL,
    name           text NOT NULL,
    sort_order     integer NOT NULL,
    next_code      text,
    used_for_zoning boolean NOT NULL DEFAULT true,
    can_roll_into  boolean NOT NULL DEFAULT true,
    UNIQUE (division_id, code)
);

-- The student's enrollment in a school for a school year (Focus's student_enrollment). Active:
-- no drop code and no end date before the day. is_primary false: a second school enrollment.
-- rolling_retention: what Rollover does with it (promote to the next grade, retain in the same
-- grade, or do not enroll next year); next_school_id: the school it rolls into (NULL: the same
-- school), set by Set Next School or by hand. zoned_*: set by Set Zoned School. fl_days_*: the
-- Florida end-of-year attendance fields. rolled_from_id: the enrollment a Rollover made this
-- one from (one rollover per enrollment).
CREATE TABLE sis.student_enrollments (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id          bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    division_id        bigint NOT NULL REFERENCES sis.divisions (id),
    school_year        integer NOT NULL REFERENCES sis.school_years (year),
    grade_level_id     bigint NOT NULL REFERENCES sis.grade_levels (id),
    is_primary         boolean NOT NULL DEFAULT true,
    starts_on          date NOT NULL,
    ends_on            date,
    enrollment_code    text,
    drop_code          text,
    rolling_retention  text NOT NULL DEFAULT 'promote'
                         CHECK (rolling_retention IN ('promote', 'retain', 'do_not_enroll')),
    next_school_id     bigint REFERENCES sis.divisions (id),
    zoned_school_id    bigint REFERENCES sis.divisions (id),
    zoned_district     text,
    fl_days_present    numeric(5, 1),
    fl_days_absent     numeric(5, 1),
    fl_days_absent_not_disc numeric(5, 1),
    rolled_from_id     bigint UNIQUE REFERENCES sis.student_enrollments (id) ON DELETE SET NULL,
    source_job_id      text,
    occurrence_id      text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX student_enrollments_school ON sis.student_enrollments (division_id, school_year);
CREATE INDEX student_enrollments_person ON sis.student_enrollments (person_id, school_year);

-- The district's address catalog: a street's house-number range (all, odd or even numbers),
-- for some grades (empty: every grade) and school year (NULL: every year), zoned to a school
-- of a district. Street names compare without case to the parsed street name of the address.
CREATE TABLE sis.address_catalog (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_year     integer REFERENCES sis.school_years (year),
    street_name     text NOT NULL,
    street_type     text,
    house_from      integer NOT NULL CHECK (house_from >= 0),
    house_to        integer NOT NULL,
    side            text NOT NULL DEFAULT 'both' CHECK (side IN ('both', 'odd', 'even')),
    postal_code     text,
    grades          text[] NOT NULL DEFAULT '{}',
    zoned_school_id bigint NOT NULL REFERENCES sis.divisions (id),
    zoned_district  text NOT NULL,
    CHECK (house_to >= house_from)
);
CREATE INDEX address_catalog_street ON sis.address_catalog (lower(street_name));

-- Course requests for a school year (the requests the scheduler builds schedules from), and
-- the queue of automatic course requests (ACRs) the Automatic Course Requests job turns into
-- them: a queued row is processed once (processed_at, with the request it made or found).
CREATE TABLE sis.course_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    course_id    bigint NOT NULL REFERENCES sis.courses (id) ON DELETE CASCADE,
    school_year  integer NOT NULL REFERENCES sis.school_years (year),
    division_id  bigint REFERENCES sis.divisions (id),
    source       text NOT NULL DEFAULT 'manual',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, course_id, school_year)
);

CREATE TABLE sis.automatic_course_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    course_id     bigint NOT NULL REFERENCES sis.courses (id) ON DELETE CASCADE,
    school_year   integer NOT NULL REFERENCES sis.school_years (year),
    reason        text NOT NULL DEFAULT '',
    queued_at     timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    request_id    bigint REFERENCES sis.course_requests (id) ON DELETE SET NULL,
    result        text CHECK (result IN ('created', 'already requested')),
    occurrence_id text
);
CREATE INDEX automatic_course_requests_queued ON sis.automatic_course_requests (queued_at)
    WHERE processed_at IS NULL;

-- Online Course Requirement (Report Cards, Graduation Requirements Report): a course counts when
-- sis.courses.online; the student's field is Yes, No or Exempt (Exempt is set by the school and
-- never changed by the job).
ALTER TABLE sis.courses ADD COLUMN online boolean NOT NULL DEFAULT false;

CREATE TABLE sis.online_course_requirement (
    person_id     bigint PRIMARY KEY REFERENCES sis.people (id) ON DELETE CASCADE,
    value         text NOT NULL CHECK (value IN ('No', 'Yes', 'Exempt')),
    met_by        bigint REFERENCES sis.enrollments (id) ON DELETE SET NULL,
    occurrence_id text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Rollover's "Rollover Second School Enrollment Records" system preference.
INSERT INTO sis.school_preferences (key, value) VALUES ('rollover_second_school', 'false')
    ON CONFLICT (key) DO NOTHING;

-- Communication Status Update(s): a text or call that could not reach its recipient (the
-- provider's final status failed, undelivered, busy or no-answer, or the message was refused
-- for good) publishes the Call Out System re-enrollment form to them, once per recipient and
-- number: the Student form to a person, the Parent form to a guardian (about the student the
-- message was for). When the recipient submits it, the job e-mails the completed form (the
-- updated contact information) and the unsuccessful messages to the school's group.
ALTER TABLE sis.form_submissions
    ADD COLUMN guardian_id bigint REFERENCES sis.guardians (id) ON DELETE CASCADE,
    ADD COLUMN answers     jsonb NOT NULL DEFAULT '{}';

CREATE TABLE sis.contact_update_requests (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id        bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    guardian_id      bigint REFERENCES sis.guardians (id) ON DELETE CASCADE,
    form_id          bigint NOT NULL REFERENCES sis.forms (id),
    unreachable      text NOT NULL,
    failures         integer NOT NULL DEFAULT 1,
    last_failure     text NOT NULL DEFAULT '',
    last_failed_at   timestamptz NOT NULL,
    published_at     timestamptz NOT NULL DEFAULT now(),
    submission_id    bigint REFERENCES sis.form_submissions (id) ON DELETE SET NULL,
    completed_at     timestamptz,
    forwarded_at     timestamptz,
    occurrence_id    text
);
CREATE UNIQUE INDEX contact_update_requests_once
    ON sis.contact_update_requests (person_id, coalesce(guardian_id, 0), unreachable);
CREATE INDEX contact_update_requests_open ON sis.contact_update_requests (published_at)
    WHERE forwarded_at IS NULL;

-- Medical: medication orders (Medication Order fields) and the doses given (Medication
-- Administration). The Medical job puts each order's administrations of the day on the
-- calendar of every school the student is enrolled in (category: the preference
-- 'medication_administration_category', for the profile 'medication_administrator_profile')
-- and keeps pill_count = pills_dispensed - pills given.
CREATE TABLE sis.medication_orders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id       bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    medication      text NOT NULL,
    form            text NOT NULL DEFAULT 'tablet',
    dose            text NOT NULL DEFAULT '',
    admin_times     time[] NOT NULL DEFAULT '{}',
    ordered_on      date NOT NULL,
    admin_starts_on date,
    admin_ends_on   date,
    pills_dispensed integer CHECK (pills_dispensed IS NULL OR pills_dispensed >= 0),
    pills_per_dose  integer NOT NULL DEFAULT 1 CHECK (pills_per_dose >= 0),
    pill_count      integer,
    active          boolean NOT NULL DEFAULT true,
    CHECK (admin_ends_on IS NULL OR admin_ends_on >= coalesce(admin_starts_on, ordered_on))
);
CREATE INDEX medication_orders_person ON sis.medication_orders (person_id);

CREATE TABLE sis.medication_administrations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        bigint NOT NULL REFERENCES sis.medication_orders (id) ON DELETE CASCADE,
    administered_at timestamptz NOT NULL,
    doses           integer NOT NULL DEFAULT 1 CHECK (doses > 0),
    administered_by bigint REFERENCES sis.people (id)
);
CREATE INDEX medication_administrations_order ON sis.medication_administrations (order_id);

-- A calendar event's category and the student it is about (the Medical job's events).
ALTER TABLE sis.calendar_events
    ADD COLUMN category  text,
    ADD COLUMN person_id bigint REFERENCES sis.people (id) ON DELETE CASCADE;

INSERT INTO sis.school_preferences (key, value) VALUES
    ('medication_administration_category', 'Medical'),
    ('medication_administrator_profile', 'Nurse')
    ON CONFLICT (key) DO NOTHING;

-- Teacher certification (imported from HR): each certificate's subject (coverage) code and
-- scope, and the codes a course's Course Code Directory entry accepts (a three-digit code is a
-- coverage group). Update Teacher Certification writes each section's Cert/Licensure/Qual
-- status for its lead teacher.
CREATE TABLE sis.teacher_certifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    code        text NOT NULL,
    scope       text NOT NULL DEFAULT '',
    issued_on   date,
    expires_on  date,
    imported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX teacher_certifications_person ON sis.teacher_certifications (person_id);

CREATE TABLE sis.course_certifications (
    course_id   bigint NOT NULL REFERENCES sis.courses (id) ON DELETE CASCADE,
    code        text NOT NULL,
    scope       text NOT NULL DEFAULT '',
    PRIMARY KEY (course_id, code, scope)
);

ALTER TABLE sis.sections
    ADD COLUMN cert_status     text CHECK (cert_status IN ('in field', 'out of field', 'no teacher', 'no requirement')),
    ADD COLUMN cert_met_by     bigint REFERENCES sis.teacher_certifications (id) ON DELETE SET NULL,
    ADD COLUMN cert_checked_at timestamptz;

-- Student Support Services (SSS). MTSS events of a student at a school (Manage Student's
-- events; inactive ones are on its Inactive Events tab). Portal alerts shown to the users of a
-- profile (the SSS event alert), once per source_key. ESE exceptionalities with their service
-- type (D: dismissed) and dismissal date. Student fields by name (Focus's custom fields, e.g.
-- ese_code, Focus's custom_698), the value NULL when cleared.
CREATE TABLE sis.mtss_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id          bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    division_id        bigint NOT NULL REFERENCES sis.divisions (id),
    title              text NOT NULL,
    tier               integer CHECK (tier BETWEEN 1 AND 3),
    starts_on          date NOT NULL,
    active             boolean NOT NULL DEFAULT true,
    inactivated_on     date,
    inactivated_reason text,
    occurrence_id      text
);
CREATE INDEX mtss_events_person ON sis.mtss_events (person_id);

CREATE TABLE sis.portal_alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    profile     text NOT NULL,
    division_id bigint REFERENCES sis.divisions (id),
    person_id   bigint REFERENCES sis.people (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    message     text NOT NULL,
    source_key  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);

CREATE TABLE sis.ese_exceptionalities (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    code          text NOT NULL,
    service_type  text NOT NULL CHECK (service_type IN ('P', 'S', 'D')),
    dismissed_on  date,
    active        boolean NOT NULL DEFAULT true
);
CREATE INDEX ese_exceptionalities_person ON sis.ese_exceptionalities (person_id);

CREATE TABLE sis.student_field_values (
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    field         text NOT NULL,
    value         text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    occurrence_id text,
    PRIMARY KEY (person_id, field)
);

INSERT INTO sis.school_preferences (key, value) VALUES
    ('mtss_enrollment_alert_profile', 'SSS Coordinator'),
    ('sss_charter_mckay_field', 'charter_mckay')
    ON CONFLICT (key) DO NOTHING;

-- Florida state reporting. A core-curricular course's class size group (the class size
-- amendment's PK-3, 4-8 and 9-12; NULL: not counted). FLORIDA_CLASSSIZE_COUNTS: per school and
-- group, the sections meeting on the day counted, their students and the average class size;
-- effective_on NULL is the current record (kept up to date), a date a separate record saved for
-- that effective date. Out-of-school suspensions: the days absent during one are disciplinary
-- (fl_days_absent_not_disc leaves them out).
ALTER TABLE sis.courses ADD COLUMN class_size_group text CHECK (class_size_group IN ('PK-3', '4-8', '9-12'));

CREATE TABLE sis.florida_classsize_counts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    division_id    bigint NOT NULL REFERENCES sis.divisions (id) ON DELETE CASCADE,
    grade_group    text NOT NULL,
    effective_on   date,
    counted_on     date NOT NULL,
    sections       integer NOT NULL,
    students       integer NOT NULL,
    average        numeric(6, 2),
    occurrence_id  text,
    calculated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX florida_classsize_counts_once
    ON sis.florida_classsize_counts (division_id, grade_group, coalesce(effective_on, '-infinity'::date));

CREATE TABLE sis.suspensions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('out_of_school', 'in_school')),
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    CHECK (ends_on >= starts_on)
);
CREATE INDEX suspensions_person ON sis.suspensions (person_id);

-- The teacher gradebook: assignments of a section (in its term, the marking period) and the
-- students' scores (points NULL: not graded yet; excused: left out). Recalc DT Grades Fix
-- stores each enrollment's running grade (kind DT, the marking period to date) from them, with
-- the letter of percent_scale; a section without assignments keeps no DT or DY grades.
CREATE TABLE sis.gradebook_assignments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    section_id      bigint NOT NULL REFERENCES sis.sections (id) ON DELETE CASCADE,
    title           text NOT NULL,
    points_possible numeric(7, 2) NOT NULL CHECK (points_possible > 0),
    due_on          date
);
CREATE INDEX gradebook_assignments_section ON sis.gradebook_assignments (section_id);

CREATE TABLE sis.gradebook_scores (
    assignment_id bigint NOT NULL REFERENCES sis.gradebook_assignments (id) ON DELETE CASCADE,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    points        numeric(7, 2) CHECK (points IS NULL OR points >= 0),
    excused       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (assignment_id, person_id)
);

CREATE TABLE sis.percent_scale (
    grade        text PRIMARY KEY,
    min_percent  numeric(5, 2) NOT NULL UNIQUE
);
INSERT INTO sis.percent_scale (grade, min_percent) VALUES
    ('A', 90), ('B', 80), ('C', 70), ('D', 60), ('F', 0);

CREATE TABLE sis.running_grades (
    enrollment_id bigint NOT NULL REFERENCES sis.enrollments (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('DT', 'DY')),
    percent       numeric(6, 2),
    grade         text,
    occurrence_id text,
    calculated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (enrollment_id, kind)
);

-- School choice applications (School Choice Reports): the student's data the application
-- carries, refreshed by Refresh Choice Data from the student's records for the statuses asked,
-- and an audit row for each field it actually changed.
CREATE TABLE sis.school_choice_application_status (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id          bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    school_year        integer NOT NULL REFERENCES sis.school_years (year),
    program            text NOT NULL,
    status             text NOT NULL DEFAULT 'Waiting',
    current_school_id  bigint REFERENCES sis.divisions (id),
    current_grade      text,
    zoned_school_id    bigint REFERENCES sis.divisions (id),
    gpa                numeric(5, 3),
    refreshed_at       timestamptz
);

CREATE TABLE sis.school_choice_audit (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id  bigint NOT NULL REFERENCES sis.school_choice_application_status (id) ON DELETE CASCADE,
    field           text NOT NULL,
    old_value       text,
    new_value       text,
    changed_by      text NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
