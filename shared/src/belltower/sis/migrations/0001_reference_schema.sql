-- The reference SIS schema: what Belltower's notifiers and integrations read and write.
-- A school's real SIS maps onto these tables (docs/sis-schema.md says how), through views or
-- a nightly copy. Ids are bigint identities; the SIS's own identifiers live in sis_id and
-- person_external_ids. Later changes are additive: 0002-0049 notifiers, 0050+ integrations.

-- Demographics every notifier can be limited by -------------------------------------------

CREATE TABLE sis.divisions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL
);

CREATE TABLE sis.campuses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL
);

CREATE TABLE sis.departments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    division_id bigint REFERENCES sis.divisions (id)
);

CREATE TABLE sis.levels (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL
);

-- People ---------------------------------------------------------------------------------

CREATE TABLE sis.people (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sis_id         text NOT NULL UNIQUE,
    first_name     text NOT NULL,
    middle_name    text,
    last_name      text NOT NULL,
    preferred_name text,
    birth_date     date,
    gender         text CHECK (gender IN ('female', 'male', 'nonbinary', 'undisclosed')),
    status         text NOT NULL CHECK (status IN ('student', 'faculty', 'staff', 'prospect', 'alumni')),
    division_id    bigint REFERENCES sis.divisions (id),
    campus_id      bigint REFERENCES sis.campuses (id),
    department_id  bigint REFERENCES sis.departments (id),
    level_id       bigint REFERENCES sis.levels (id),
    login_id       text UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_status ON sis.people (status);
CREATE INDEX people_birthday ON sis.people (extract(month FROM birth_date), extract(day FROM birth_date));

CREATE TABLE sis.person_external_ids (
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    system      text NOT NULL,
    value       text NOT NULL,
    PRIMARY KEY (person_id, system),
    UNIQUE (system, value)
);

CREATE TABLE sis.person_statuses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    status      text NOT NULL CHECK (status IN ('student', 'faculty', 'staff', 'prospect', 'alumni')),
    starts_on   date NOT NULL,
    ends_on     date,
    added_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX person_statuses_added ON sis.person_statuses (added_at);
CREATE INDEX person_statuses_person ON sis.person_statuses (person_id);

CREATE TABLE sis.person_indicators (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    indicator   text NOT NULL,
    starts_on   date NOT NULL,
    ends_on     date,
    added_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, indicator, starts_on)
);
CREATE INDEX person_indicators_added ON sis.person_indicators (indicator, added_at);

CREATE TABLE sis.addresses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('home', 'mailing', 'billing', 'campus', 'work')),
    preferred   boolean NOT NULL DEFAULT false,
    line1       text NOT NULL,
    line2       text,
    city        text NOT NULL,
    region      text,
    postal_code text,
    country     text NOT NULL DEFAULT 'US'
);
CREATE INDEX addresses_person ON sis.addresses (person_id);
CREATE UNIQUE INDEX addresses_one_preferred ON sis.addresses (person_id) WHERE preferred;

CREATE TABLE sis.emails (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('school', 'personal', 'work', 'parent')),
    address     text NOT NULL,
    is_primary  boolean NOT NULL DEFAULT false
);
CREATE INDEX emails_person ON sis.emails (person_id);
CREATE UNIQUE INDEX emails_one_primary ON sis.emails (person_id) WHERE is_primary;

CREATE TABLE sis.phones (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('home', 'cell', 'work')),
    number      text NOT NULL,
    sms_ok      boolean NOT NULL DEFAULT false,
    is_primary  boolean NOT NULL DEFAULT false
);
CREATE INDEX phones_person ON sis.phones (person_id);
CREATE UNIQUE INDEX phones_one_primary ON sis.phones (person_id) WHERE is_primary;

-- Terms, courses, sections, waitlists ----------------------------------------------------

CREATE TABLE sis.terms (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code              text NOT NULL UNIQUE,
    name              text NOT NULL,
    starts_on         date NOT NULL,
    ends_on           date NOT NULL,
    add_drop_ends_on  date,
    full_time_credits numeric(5, 2) NOT NULL DEFAULT 12,
    CHECK (ends_on >= starts_on)
);

CREATE TABLE sis.courses (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE,
    title         text NOT NULL,
    credits       numeric(5, 2) NOT NULL CHECK (credits >= 0),
    department_id bigint REFERENCES sis.departments (id),
    level_id      bigint REFERENCES sis.levels (id)
);

CREATE TABLE sis.sections (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    course_id           bigint NOT NULL REFERENCES sis.courses (id),
    term_id             bigint NOT NULL REFERENCES sis.terms (id),
    section_code        text NOT NULL,
    division_id         bigint REFERENCES sis.divisions (id),
    campus_id           bigint REFERENCES sis.campuses (id),
    lead_faculty_id     bigint REFERENCES sis.people (id),
    starts_on           date NOT NULL,
    ends_on             date NOT NULL,
    meeting_days        text NOT NULL DEFAULT '',
    capacity            integer NOT NULL CHECK (capacity >= 0),
    enrolled            integer NOT NULL DEFAULT 0 CHECK (enrolled >= 0),
    attendance_required boolean NOT NULL DEFAULT true,
    UNIQUE (course_id, term_id, section_code),
    CHECK (ends_on >= starts_on)
);
CREATE INDEX sections_term ON sis.sections (term_id);
CREATE INDEX sections_lead ON sis.sections (lead_faculty_id);
CREATE INDEX sections_ends ON sis.sections (ends_on);

CREATE TABLE sis.section_meetings (
    section_id  bigint NOT NULL REFERENCES sis.sections (id) ON DELETE CASCADE,
    meets_on    date NOT NULL,
    PRIMARY KEY (section_id, meets_on)
);
CREATE INDEX section_meetings_date ON sis.section_meetings (meets_on);

CREATE TABLE sis.waitlist (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    section_id  bigint NOT NULL REFERENCES sis.sections (id) ON DELETE CASCADE,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position > 0),
    added_at    timestamptz NOT NULL DEFAULT now(),
    state       text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'enrolled', 'removed')),
    resolved_at timestamptz
);
CREATE UNIQUE INDEX waitlist_one_waiting ON sis.waitlist (section_id, person_id) WHERE state = 'waiting';
CREATE INDEX waitlist_order ON sis.waitlist (section_id, position) WHERE state = 'waiting';

-- Enrollments, schedule changes, attendance, grades --------------------------------------

CREATE TABLE sis.enrollments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id       bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    section_id      bigint NOT NULL REFERENCES sis.sections (id) ON DELETE CASCADE,
    status          text NOT NULL CHECK (status IN ('enrolled', 'dropped', 'withdrawn', 'completed', 'audit')),
    credits         numeric(5, 2) NOT NULL CHECK (credits >= 0),
    registered_at   timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz,
    dropped_at      timestamptz,
    withdrawn_on    date,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, section_id)
);
CREATE INDEX enrollments_section ON sis.enrollments (section_id);
CREATE INDEX enrollments_withdrawn ON sis.enrollments (withdrawn_on) WHERE withdrawn_on IS NOT NULL;

CREATE TABLE sis.schedule_changes (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id           bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    section_id          bigint NOT NULL REFERENCES sis.sections (id) ON DELETE CASCADE,
    term_id             bigint NOT NULL REFERENCES sis.terms (id),
    action              text NOT NULL CHECK (action IN ('add', 'drop', 'withdraw')),
    credits             numeric(5, 2) NOT NULL,
    term_credits_before numeric(6, 2) NOT NULL,
    term_credits_after  numeric(6, 2) NOT NULL,
    changed_at          timestamptz NOT NULL DEFAULT now(),
    changed_by          text
);
CREATE INDEX schedule_changes_at ON sis.schedule_changes (changed_at);
CREATE INDEX schedule_changes_person ON sis.schedule_changes (person_id, term_id);

CREATE TABLE sis.attendance (
    section_id  bigint NOT NULL,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    meets_on    date NOT NULL,
    mark        text NOT NULL CHECK (mark IN ('present', 'absent', 'tardy', 'excused')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by bigint REFERENCES sis.people (id),
    PRIMARY KEY (section_id, person_id, meets_on),
    FOREIGN KEY (section_id, meets_on) REFERENCES sis.section_meetings (section_id, meets_on) ON DELETE CASCADE
);
CREATE INDEX attendance_person ON sis.attendance (person_id) WHERE mark IN ('absent', 'tardy');

CREATE TABLE sis.grades (
    enrollment_id  bigint PRIMARY KEY REFERENCES sis.enrollments (id) ON DELETE CASCADE,
    grade          text,
    is_official    boolean NOT NULL DEFAULT false,
    is_incomplete  boolean NOT NULL DEFAULT false,
    incomplete_due date,
    final_posted   boolean NOT NULL DEFAULT false,
    posted_at      timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Holds, money, health, transfer credit --------------------------------------------------

CREATE TABLE sis.hold_types (
    code                text PRIMARY KEY,
    name                text NOT NULL,
    blocks_registration boolean NOT NULL DEFAULT false,
    user_defined        boolean NOT NULL DEFAULT false
);

CREATE TABLE sis.holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    hold_type   text NOT NULL REFERENCES sis.hold_types (code),
    reason      text NOT NULL DEFAULT '',
    starts_on   date NOT NULL,
    ends_on     date,
    added_at    timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    CHECK (ends_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX holds_person ON sis.holds (person_id);
CREATE INDEX holds_starts ON sis.holds (starts_on);

CREATE TABLE sis.transaction_codes (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('charge', 'payment', 'financial_aid', 'refund', 'adjustment')),
    post_award  boolean NOT NULL DEFAULT false
);

-- amount > 0 is owed by the student (a charge), amount < 0 is paid or credited to them.
CREATE TABLE sis.transactions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id     bigint REFERENCES sis.terms (id),
    code        text NOT NULL REFERENCES sis.transaction_codes (code),
    amount      numeric(12, 2) NOT NULL,
    posted_on   date NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_person ON sis.transactions (person_id);

-- One row per person with transactions: balance > 0 is due, balance < 0 is a credit balance.
CREATE VIEW sis.balances AS
SELECT t.person_id,
       sum(t.amount)::numeric(12, 2) AS balance,
       sum(t.amount) FILTER (WHERE c.kind = 'charge')::numeric(12, 2) AS charges,
       (-coalesce(sum(t.amount) FILTER (WHERE c.kind <> 'charge'), 0))::numeric(12, 2) AS credits,
       max(t.posted_on) AS last_posted_on,
       max(t.posted_on) FILTER (WHERE c.kind = 'financial_aid' AND c.post_award) AS last_aid_posted_on
  FROM sis.transactions t
  JOIN sis.transaction_codes c ON c.code = t.code
 GROUP BY t.person_id;

CREATE TABLE sis.immunizations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id       bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    administered_on date,
    expires_on      date
);
CREATE INDEX immunizations_expires ON sis.immunizations (expires_on);

CREATE TABLE sis.transfer_credits (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    institution   text NOT NULL,
    course_code   text NOT NULL,
    course_title  text NOT NULL,
    credits       numeric(5, 2) NOT NULL CHECK (credits >= 0),
    grade         text,
    accepted_on   date NOT NULL,
    added_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transfer_credits_added ON sis.transfer_credits (added_at);

-- Who is told, when, and what is waiting for them -----------------------------------------

CREATE TABLE sis.notification_groups (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT ''
);

CREATE TABLE sis.notification_group_members (
    group_id    bigint NOT NULL REFERENCES sis.notification_groups (id) ON DELETE CASCADE,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    by_email    boolean NOT NULL DEFAULT true,
    by_reminder boolean NOT NULL DEFAULT false,
    PRIMARY KEY (group_id, person_id)
);

CREATE TABLE sis.registration_appointments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id     bigint NOT NULL REFERENCES sis.terms (id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz,
    UNIQUE (person_id, term_id)
);

-- "Activities" that carry a Timed Email: what to send, to which statuses, on which day.
CREATE TABLE sis.email_activities (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    subject     text NOT NULL,
    body_text   text NOT NULL,
    body_html   text,
    send_on     date NOT NULL,
    statuses    text[] NOT NULL DEFAULT ARRAY['student']
);

-- In-app reminders shown in the console; item_key says what the reminder is about.
CREATE TABLE sis.reminders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    source      text NOT NULL,
    job_id      text,
    occurrence_id text,
    title       text NOT NULL,
    body_text   text NOT NULL,
    body_html   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz,
    dismissed_at timestamptz,
    UNIQUE (person_id, source, occurrence_id)
);
CREATE INDEX reminders_unread ON sis.reminders (person_id) WHERE read_at IS NULL AND dismissed_at IS NULL;
