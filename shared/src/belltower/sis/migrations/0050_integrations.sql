-- What the integrations and housekeeping job types read and write beyond the notifiers' tables
-- (integration-worker, 0050+). Employees are people (staff or faculty) matched by their HR
-- number in person_external_ids (system 'hr').

CREATE TABLE sis.employees (
    person_id   bigint PRIMARY KEY REFERENCES sis.people (id) ON DELETE CASCADE,
    hire_date   date,
    position    text NOT NULL DEFAULT '',
    department  text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT 'sis',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Leave imported from Frontline Absence Management, one row per Frontline absence and day.
-- A leave that payroll has paid (paid_at) is never changed by an import.
CREATE TABLE sis.leave_requests (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id          text NOT NULL UNIQUE,
    person_id            bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    leave_on             date NOT NULL,
    leave_type           text NOT NULL,
    hours                numeric(5, 2) NOT NULL CHECK (hours >= 0),
    reason               text NOT NULL DEFAULT '',
    substitute_person_id bigint REFERENCES sis.people (id),
    substitute_name      text,
    paid_at              timestamptz,
    source               text NOT NULL DEFAULT 'frontline',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leave_requests_person ON sis.leave_requests (person_id, leave_on);

CREATE TABLE sis.deduction_codes (
    code        text PRIMARY KEY,
    name        text NOT NULL
);
INSERT INTO sis.deduction_codes (code, name) VALUES ('METLIFE_SUPP_LIFE', 'MetLife Supplemental Life');

-- Payroll deductions per employee and code; imports set the amount, so a re-run changes nothing.
CREATE TABLE sis.deductions (
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    code         text NOT NULL REFERENCES sis.deduction_codes (code),
    amount       numeric(10, 2) NOT NULL CHECK (amount >= 0),
    coverage     numeric(12, 2),
    effective_on date NOT NULL,
    source       text NOT NULL DEFAULT 'sis',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, code)
);

-- School and district calendar events. Events an Import ICS job created carry its job id and
-- the event's key (ICS UID and occurrence date); the job touches only its own.
CREATE TABLE sis.calendar_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    calendar      text NOT NULL DEFAULT 'district',
    title         text NOT NULL,
    description   text NOT NULL DEFAULT '',
    location      text NOT NULL DEFAULT '',
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz,
    all_day       boolean NOT NULL DEFAULT false,
    source        text NOT NULL DEFAULT 'manual',
    source_job_id text,
    source_key    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_job_id, source_key),
    CHECK ((source_job_id IS NULL) = (source_key IS NULL))
);
CREATE INDEX calendar_events_when ON sis.calendar_events (calendar, starts_at);

-- The SIS's log of temporary tables its processes create and drop; Daily Temp Table Cleanup empties it.
CREATE TABLE sis.temp_table_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process    text NOT NULL,
    table_name text NOT NULL,
    action     text NOT NULL CHECK (action IN ('created', 'dropped')),
    logged_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX temp_table_log_at ON sis.temp_table_log (logged_at);

-- Uploaded documents (Document Management): files under the batch folder, by category.
-- Category B files are purged after the retention period unless the person has a document hold.
CREATE TABLE sis.documents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    field       text NOT NULL DEFAULT 'upload',
    category    text NOT NULL CHECK (category IN ('A', 'B')),
    file_path   text NOT NULL UNIQUE,
    uploaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_uploaded ON sis.documents (category, uploaded_at);

CREATE TABLE sis.document_holds (
    person_id   bigint PRIMARY KEY REFERENCES sis.people (id) ON DELETE CASCADE,
    set_at      timestamptz NOT NULL DEFAULT now(),
    set_by      text
);

-- Messages waiting to go out: e-mail over SMTP; SMS, voice calls and push through a provider.
CREATE TABLE sis.communication_queue (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'voice', 'push')),
    person_id   bigint REFERENCES sis.people (id) ON DELETE SET NULL,
    to_address  text NOT NULL,
    subject     text NOT NULL DEFAULT '',
    body_text   text NOT NULL,
    body_html   text,
    send_after  timestamptz NOT NULL DEFAULT now(),
    state       text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    sent_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX communication_queue_due ON sis.communication_queue (send_after) WHERE state = 'queued';

-- SMS, voice and push messages handed over for delivery; with no provider configured they are
-- only recorded here (provider 'outbox'), which the Communication Queue job says in its output.
CREATE TABLE sis.outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_id    bigint NOT NULL UNIQUE REFERENCES sis.communication_queue (id) ON DELETE CASCADE,
    channel     text NOT NULL,
    to_address  text NOT NULL,
    body_text   text NOT NULL,
    provider    text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- School-wide preferences the jobs honour (time zone, quiet hours for calls and SMS).
CREATE TABLE sis.school_preferences (
    key         text PRIMARY KEY,
    value       text NOT NULL
);
INSERT INTO sis.school_preferences (key, value) VALUES
    ('time_zone', 'America/New_York'),
    ('comm_do_not_send_before', '08:00'),
    ('comm_do_not_send_after', '20:00');
