-- Focus ERP's accounts receivable and point of sale, as the finance jobs of the Focus catalog
-- (integration-worker, finance.*) read and write them: ERP invoices (Point of Sale, Accounts
-- Receivable and internal-account invoices, Focus's gl_pos_invoice / gl_ap_invoice) with their
-- allocations (gl_pos_invoice_allocation) and payments, the Automatic Invoices module's rules,
-- payment plans, the Store's cash drawers and their cashouts, receipts, P-Card requisitions and
-- the ERP's customer record of each billed student. Names carry "erp_" (or the ERP concept) so
-- they stay apart from the SIS ledger (transactions, balances) and the billing files' tables.

-- The ERP's customer record of a billed person: the name and address invoices are printed with,
-- kept in step with the SIS by Update Student Financial Data.
CREATE TABLE sis.erp_customers (
    person_id    bigint PRIMARY KEY REFERENCES sis.people (id) ON DELETE CASCADE,
    billing_name text NOT NULL,
    line1        text,
    line2        text,
    city         text,
    region       text,
    postal_code  text,
    country      text,
    synced_at    timestamptz NOT NULL DEFAULT now()
);

-- Automatic Invoices module: which students (division and level codes; empty: any), what to bill,
-- how often (one invoice per student and interval: annual = the school year from July 1,
-- term = the term in progress, monthly, weekly = the ISO week) and from when to when.
CREATE TABLE sis.erp_automatic_invoices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    description text NOT NULL,
    interval    text NOT NULL CHECK (interval IN ('annual', 'term', 'monthly', 'weekly')),
    divisions   text[] NOT NULL DEFAULT '{}',
    levels      text[] NOT NULL DEFAULT '{}',
    item_code   text NOT NULL,
    gl_account  text NOT NULL,
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    due_days    integer NOT NULL DEFAULT 30 CHECK (due_days BETWEEN 0 AND 366),
    starts_on   date NOT NULL,
    ends_on     date,
    active      boolean NOT NULL DEFAULT true
);

-- Payment plans (Accounts Receivable > Point of Sale > Payment Plans): a total split into
-- installments due weekly, every two weeks or monthly from first_due_on. processed_at is set
-- when Create Payment Plan Invoices has invoiced every installment.
CREATE TABLE sis.erp_payment_plans (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    description  text NOT NULL,
    item_code    text NOT NULL,
    gl_account   text NOT NULL,
    total        numeric(12, 2) NOT NULL CHECK (total > 0),
    installments smallint NOT NULL CHECK (installments BETWEEN 1 AND 60),
    frequency    text NOT NULL CHECK (frequency IN ('weekly', 'biweekly', 'monthly')),
    first_due_on date NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);

-- An ERP invoice. module: 'pos' (Point of Sale), 'ar' (Accounts Receivable > Invoices) or
-- 'internal' (Internal Account Invoices). total, amount_paid and balance are the billing table's
-- figures (POS Invoice Table Update keeps them equal to the allocations and payments).
-- deleted is Focus's gl_ap_invoice.deleted flag; voided_on marks a voided/cancelled invoice.
-- An invoice a job created carries what made it: its automatic-invoice rule and interval, or
-- its payment plan and installment (each unique, so a re-run cannot bill twice), and the job.
CREATE TABLE sis.erp_invoices (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_number       text NOT NULL UNIQUE,
    module               text NOT NULL CHECK (module IN ('pos', 'ar', 'internal')),
    person_id            bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    invoice_date         date NOT NULL,
    due_date             date,
    description          text NOT NULL DEFAULT '',
    total                numeric(12, 2) NOT NULL DEFAULT 0,
    amount_paid          numeric(12, 2) NOT NULL DEFAULT 0,
    balance              numeric(12, 2) NOT NULL DEFAULT 0,
    deleted              boolean NOT NULL DEFAULT false,
    deleted_at           timestamptz,
    voided_on            date,
    void_reason          text,
    automatic_invoice_id bigint REFERENCES sis.erp_automatic_invoices (id),
    period_key           text,
    payment_plan_id      bigint REFERENCES sis.erp_payment_plans (id),
    installment          smallint,
    source_job_id        text,
    source_occurrence_id text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (automatic_invoice_id, person_id, period_key),
    UNIQUE (payment_plan_id, installment),
    CHECK ((automatic_invoice_id IS NULL) = (period_key IS NULL)),
    CHECK ((payment_plan_id IS NULL) = (installment IS NULL))
);
CREATE INDEX erp_invoices_person ON sis.erp_invoices (person_id);
CREATE INDEX erp_invoices_open ON sis.erp_invoices (module, invoice_date) WHERE NOT deleted AND voided_on IS NULL;
CREATE SEQUENCE sis.erp_invoice_number_seq;

-- What an invoice bills, line by line, to which GL account; active false: the line was removed.
-- amount_paid is the part of the invoice's payments applied to the line (in line order).
CREATE TABLE sis.erp_invoice_allocations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id  bigint NOT NULL REFERENCES sis.erp_invoices (id) ON DELETE CASCADE,
    line_number smallint NOT NULL,
    item_code   text NOT NULL,
    description text NOT NULL DEFAULT '',
    gl_account  text NOT NULL,
    amount      numeric(12, 2) NOT NULL CHECK (amount >= 0),
    active      boolean NOT NULL DEFAULT true,
    amount_paid numeric(12, 2) NOT NULL DEFAULT 0,
    UNIQUE (invoice_id, line_number)
);

-- The Store's and the offices' cash drawers. A portal-enabled drawer takes the online payments
-- (Authorize.net); its batch settles daily at settlement_time (school time zone), after which the
-- cashout jobs close the day. kind 'store': the Store's drawers; 'portal': the parent portal's.
CREATE TABLE sis.erp_cash_drawers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code            text NOT NULL UNIQUE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('store', 'portal', 'office')),
    division_id     bigint NOT NULL REFERENCES sis.divisions (id),
    portal_enabled  boolean NOT NULL DEFAULT false,
    settlement_time time NOT NULL DEFAULT '15:00',
    active          boolean NOT NULL DEFAULT true
);

-- A drawer's cashout for one business day: the payments it closed and their total.
CREATE TABLE sis.erp_cashouts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    drawer_id      bigint NOT NULL REFERENCES sis.erp_cash_drawers (id),
    business_date  date NOT NULL,
    cutoff_at      timestamptz NOT NULL,
    payments       integer NOT NULL,
    total          numeric(12, 2) NOT NULL,
    automatched    integer NOT NULL DEFAULT 0,
    source_job_id  text,
    occurrence_id  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (drawer_id, business_date)
);

-- Money on an invoice: a payment, a refund of one, or a deferral (the fee is deferred, not
-- paid). amount > 0 always; valid false: the payment was reversed (declined, NSF, voided).
-- A portal payment can arrive before it is matched to its invoice (invoice_id NULL, the payer's
-- invoice number in reference). Each payment has its receipt; receipt_file is its PDF in the
-- batch folder once Generate PDFs from Receipts has made it.
CREATE TABLE sis.erp_payments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id     bigint REFERENCES sis.erp_invoices (id) ON DELETE CASCADE,
    person_id      bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('payment', 'refund', 'deferral')),
    amount         numeric(12, 2) NOT NULL CHECK (amount > 0),
    method         text NOT NULL CHECK (method IN ('cash', 'check', 'card', 'portal', 'deferral')),
    reference      text NOT NULL DEFAULT '',
    valid          boolean NOT NULL DEFAULT true,
    received_at    timestamptz NOT NULL DEFAULT now(),
    drawer_id      bigint REFERENCES sis.erp_cash_drawers (id),
    cashout_id     bigint REFERENCES sis.erp_cashouts (id),
    receipt_number text NOT NULL UNIQUE,
    store_receipt  boolean NOT NULL DEFAULT false,
    receipt_file   text
);
CREATE INDEX erp_payments_invoice ON sis.erp_payments (invoice_id);
CREATE INDEX erp_payments_drawer ON sis.erp_payments (drawer_id, received_at) WHERE cashout_id IS NULL;
CREATE INDEX erp_payments_received ON sis.erp_payments (received_at);

-- P-Card requisitions (Misc Purchase Requests); status_since is when it entered its status.
CREATE TABLE sis.erp_pcard_requisitions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number       text NOT NULL UNIQUE,
    requester_id bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    vendor       text NOT NULL,
    description  text NOT NULL DEFAULT '',
    amount       numeric(12, 2) NOT NULL CHECK (amount >= 0),
    status       text NOT NULL CHECK (status IN ('draft', 'pending_approval', 'approved', 'rejected', 'ordered')),
    status_since date NOT NULL
);

-- A reminder the P-Card administrator was sent, once per requisition and status.
CREATE TABLE sis.erp_pcard_reminders (
    requisition_id bigint NOT NULL REFERENCES sis.erp_pcard_requisitions (id) ON DELETE CASCADE,
    status         text NOT NULL,
    sent_to        text NOT NULL,
    occurrence_id  text NOT NULL,
    sent_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (requisition_id, status)
);

-- ERP > Setup > Clauses: the e-mail texts the ERP's jobs send (subject and body templates).
CREATE TABLE sis.erp_clauses (
    code    text PRIMARY KEY,
    subject text NOT NULL,
    body    text NOT NULL
);
INSERT INTO sis.erp_clauses (code, subject, body) VALUES
    ('pcard_draft_email', 'P-Card drafts waiting {{ days }} days or more',
     'These P-Card requisitions have been drafts for {{ days }} days or more:'),
    ('pcard_pending_approval_email', 'P-Card requisitions pending approval {{ days }} days or more',
     'These P-Card requisitions have been pending approval for {{ days }} days or more:');

-- ERP > Setup > Settings > Accounts Payable: days old before a reminder; the administrator (an e-mail address).
INSERT INTO sis.school_preferences (key, value) VALUES
    ('pcard_reminder_days', '7'),
    ('pcard_administrator', '')
ON CONFLICT (key) DO NOTHING;

-- District fee templates (Focus Postsecondary): the district pushes fee templates out to every
-- school's programs (pushed_at); a program built after the push gets them from Automatic
-- Application of District Template Fees. One row per program and template it carries.
CREATE TABLE sis.erp_programs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    division_id bigint NOT NULL REFERENCES sis.divisions (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sis.erp_fee_templates (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code       text NOT NULL UNIQUE,
    name       text NOT NULL,
    item_code  text NOT NULL,
    gl_account text NOT NULL,
    amount     numeric(12, 2) NOT NULL CHECK (amount >= 0),
    pushed_at  timestamptz
);

CREATE TABLE sis.erp_program_fees (
    program_id    bigint NOT NULL REFERENCES sis.erp_programs (id) ON DELETE CASCADE,
    template_id   bigint NOT NULL REFERENCES sis.erp_fee_templates (id) ON DELETE CASCADE,
    amount        numeric(12, 2) NOT NULL,
    assigned_by   text NOT NULL DEFAULT 'push' CHECK (assigned_by IN ('push', 'scheduled job', 'manual')),
    occurrence_id text,
    assigned_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, template_id)
);

-- Employee benefits (ERP > Human Resources): plan rates by age band and ZIP code area (the
-- longest matching zip_prefix wins; '' matches any), each employee's or retiree's enrollment
-- with the rate, age and ZIP code it was last rated at, and every rate change the rating jobs
-- made (one per enrollment and occurrence).
CREATE TABLE sis.erp_benefit_plans (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE sis.erp_benefit_rates (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_code    text NOT NULL REFERENCES sis.erp_benefit_plans (code) ON DELETE CASCADE,
    min_age      smallint NOT NULL DEFAULT 0,
    max_age      smallint NOT NULL DEFAULT 150,
    zip_prefix   text NOT NULL DEFAULT '' CHECK (zip_prefix ~ '^[0-9]{0,5}$'),
    monthly_rate numeric(10, 2) NOT NULL CHECK (monthly_rate >= 0),
    CHECK (max_age >= min_age),
    UNIQUE (plan_code, min_age, zip_prefix)
);

CREATE TABLE sis.erp_benefit_enrollments (
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    plan_code    text NOT NULL REFERENCES sis.erp_benefit_plans (code),
    retiree      boolean NOT NULL DEFAULT false,
    monthly_rate numeric(10, 2),
    rated_age    smallint,
    rated_zip    text,
    rated_on     date,
    PRIMARY KEY (person_id, plan_code)
);

CREATE TABLE sis.erp_benefit_rate_changes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    plan_code     text NOT NULL,
    changed_on    date NOT NULL,
    old_rate      numeric(10, 2),
    new_rate      numeric(10, 2) NOT NULL,
    old_age       smallint,
    new_age       smallint NOT NULL,
    old_zip       text,
    new_zip       text,
    reason        text NOT NULL,
    occurrence_id text NOT NULL,
    UNIQUE (person_id, plan_code, occurrence_id)
);

-- Employment agreements (ERP > Human Resources > Employment Agreement Maintenance): a document
-- published on a date, for employees of some departments and positions (empty: all); the
-- employees it is assigned to. Employees hired on or before the published date are eligible.
CREATE TABLE sis.erp_agreements (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code         text NOT NULL UNIQUE,
    title        text NOT NULL,
    published_on date NOT NULL,
    deadline_on  date,
    departments  text[] NOT NULL DEFAULT '{}',
    positions    text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE sis.erp_agreement_assignments (
    agreement_id  bigint NOT NULL REFERENCES sis.erp_agreements (id) ON DELETE CASCADE,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    assigned_on   date NOT NULL,
    occurrence_id text,
    PRIMARY KEY (agreement_id, person_id)
);

-- Transportation (ERP > Field Trips): the field trip requests and the notifications their
-- workflow raised (request submitted, approved, denied, bus assigned, ...), each for one person
-- as an in-app alert, an e-mail or both; Field Trip Notifications delivers them and stamps
-- alerted_at / emailed_at (and the in-app reminder it made).
CREATE TABLE sis.erp_field_trips (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number       text NOT NULL UNIQUE,
    requester_id bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    destination  text NOT NULL,
    departs_at   timestamptz NOT NULL,
    returns_at   timestamptz,
    status       text NOT NULL CHECK (status IN ('requested', 'approved', 'denied', 'scheduled', 'cancelled', 'completed'))
);

CREATE TABLE sis.erp_transportation_notices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    field_trip_id bigint REFERENCES sis.erp_field_trips (id) ON DELETE CASCADE,
    person_id     bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    channel       text NOT NULL CHECK (channel IN ('alert', 'email', 'both')),
    subject       text NOT NULL,
    body          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    alerted_at    timestamptz,
    reminder_id   bigint REFERENCES sis.reminders (id) ON DELETE SET NULL,
    emailed_at    timestamptz,
    problem       text
);
CREATE INDEX erp_transportation_notices_due ON sis.erp_transportation_notices (created_at)
    WHERE alerted_at IS NULL OR emailed_at IS NULL;
