-- The school's own nightly work: what the rest of the SONIS notifiers and the Focus housekeeping
-- jobs read and change (docs/sis-schema.md). Additive, like every migration here.

-- Addresses: when a record last changed (Parse Addresses re-parses only what changed since), and
-- its parsed components (Focus keeps them to compare with its address catalog).
ALTER TABLE sis.addresses ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE sis.address_parts (
    address_id     bigint PRIMARY KEY REFERENCES sis.addresses (id) ON DELETE CASCADE,
    house_number   text,
    pre_direction  text,
    street_name    text,
    street_type    text,
    post_direction text,
    unit_type      text,
    unit           text,
    problem        text,
    parsed_at      timestamptz NOT NULL DEFAULT now()
);

-- Admissions: the application checklist (an item is received when received_at is set).
CREATE TABLE sis.application_checklist_items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    item        text NOT NULL,
    required    boolean NOT NULL DEFAULT true,
    received_at timestamptz,
    UNIQUE (person_id, item)
);
CREATE INDEX application_checklist_received ON sis.application_checklist_items (received_at);

-- Activities recorded on a person's account (calls, visits, tours, ...), by type.
CREATE TABLE sis.activity_types (
    code        text PRIMARY KEY,
    name        text NOT NULL
);

CREATE TABLE sis.activities (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    activity_type text NOT NULL REFERENCES sis.activity_types (code),
    occurred_on   date NOT NULL,
    notes         text NOT NULL DEFAULT '',
    added_by      text,
    added_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activities_added ON sis.activities (added_at);

-- The Document Management System's category of each uploaded document (documents: 0050).
ALTER TABLE sis.documents ADD COLUMN dms_category text NOT NULL DEFAULT 'General';
CREATE INDEX documents_uploaded_at ON sis.documents (uploaded_at);

-- Form Builder forms and their submissions.
CREATE TABLE sis.forms (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    title       text NOT NULL
);

CREATE TABLE sis.form_submissions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    form_id      bigint NOT NULL REFERENCES sis.forms (id) ON DELETE CASCADE,
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    submitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX form_submissions_at ON sis.form_submissions (submitted_at);

-- When each person's PIN and password were set and whether they have been expired (must be
-- changed at the next sign-in). The secrets themselves stay in the SIS.
CREATE TABLE sis.login_credentials (
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('pin', 'password')),
    set_at      timestamptz NOT NULL,
    expired_at  timestamptz,
    PRIMARY KEY (person_id, kind)
);

-- Loans: financial-aid T-codes that disburse a loan.
ALTER TABLE sis.transaction_codes ADD COLUMN is_loan boolean NOT NULL DEFAULT false;
CREATE INDEX transactions_created ON sis.transactions (created_at);

-- Alumni employment records; entered_by_self when the alumnus added it, confirmed by an office.
CREATE TABLE sis.employment_records (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id       bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    employer        text NOT NULL,
    job_title       text NOT NULL DEFAULT '',
    starts_on       date,
    ends_on         date,
    entered_by_self boolean NOT NULL DEFAULT true,
    added_at        timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz,
    confirmed_by    text
);
CREATE INDEX employment_records_unconfirmed ON sis.employment_records (added_at) WHERE confirmed_at IS NULL;

-- ISIRs (Institutional Student Information Records) as imported from the federal processor. Only
-- the fields the notifiers need, named after the ISIR record layout: Award Year, Transaction
-- Number, Name ID, Student Is Selected for Verification (Y, N or *), Verification Tracking Flag,
-- Transaction Process Date. person_id is the matched student; an unmatched ISIR saved for a
-- later import has no person_id and a saved_at.
CREATE TABLE sis.isirs (
    id                         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id                  bigint REFERENCES sis.people (id) ON DELETE CASCADE,
    award_year                 text NOT NULL,
    transaction_number         smallint NOT NULL CHECK (transaction_number BETWEEN 1 AND 99),
    name_id                    text NOT NULL,
    student_last_name          text NOT NULL,
    student_first_name         text NOT NULL,
    selected_for_verification  text NOT NULL DEFAULT 'N' CHECK (selected_for_verification IN ('Y', 'N', '*')),
    verification_tracking_flag text,
    transaction_process_date   date NOT NULL,
    imported_at                timestamptz NOT NULL DEFAULT now(),
    saved_at                   timestamptz,
    CHECK (person_id IS NOT NULL OR saved_at IS NOT NULL)
);
CREATE INDEX isirs_imported ON sis.isirs (imported_at);
CREATE INDEX isirs_saved ON sis.isirs (saved_at) WHERE person_id IS NULL;

-- Breadcrumbs (SONIS's NMTRACK): every page an admin user visited.
CREATE TABLE sis.page_visits (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    page        text NOT NULL,
    visited_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX page_visits_at ON sis.page_visits (visited_at);

-- Prospect Inquiry Card requests waiting to be imported as prospects; imported_at and person_id
-- once imported, problem when they could not be.
CREATE TABLE sis.prospect_requests (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_name  text NOT NULL DEFAULT '',
    last_name   text NOT NULL DEFAULT '',
    email       text NOT NULL DEFAULT '',
    phone       text NOT NULL DEFAULT '',
    birth_date  date,
    interest    text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    imported_at timestamptz,
    person_id   bigint REFERENCES sis.people (id) ON DELETE SET NULL,
    problem     text,
    imported_by text
);
CREATE INDEX prospect_requests_waiting ON sis.prospect_requests (received_at) WHERE imported_at IS NULL;

-- Master schedule snapshots: the sections and enrollments as they stood, per job occurrence.
CREATE TABLE sis.schedule_snapshots (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        text NOT NULL,
    occurrence_id text NOT NULL UNIQUE,
    taken_at      timestamptz NOT NULL DEFAULT now(),
    terms         text[] NOT NULL,
    sections      integer NOT NULL,
    enrollments   integer NOT NULL
);

CREATE TABLE sis.schedule_snapshot_rows (
    snapshot_id bigint NOT NULL REFERENCES sis.schedule_snapshots (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('section', 'enrollment')),
    record_id   bigint NOT NULL,
    record      jsonb NOT NULL,
    PRIMARY KEY (snapshot_id, kind, record_id)
);
