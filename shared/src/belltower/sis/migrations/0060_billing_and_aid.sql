-- Billing and financial-aid files (docs/billing-and-aid.md): the student's billing account,
-- partner references on ledger postings, payment plans, refunds, aid awards and their
-- disbursements, and the ledger of partner files Belltower wrote or imported.

-- A student's billing account: how statements go out (paperless) and the partner's id for them.
CREATE TABLE sis.billing_accounts (
    person_id          bigint PRIMARY KEY REFERENCES sis.people (id) ON DELETE CASCADE,
    paperless          boolean NOT NULL DEFAULT false,
    statement_email    text,
    nelnet_customer_id text UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Where a posting came from when a partner file brought it (source 'nelnet', 'regent', ...) and
-- the partner's own id for it: a file imported again finds its postings already there.
ALTER TABLE sis.transactions ADD COLUMN source text, ADD COLUMN external_ref text;
CREATE UNIQUE INDEX transactions_external ON sis.transactions (source, external_ref)
    WHERE external_ref IS NOT NULL;

-- Payment plans (Nelnet "agreements"): one per provider agreement id.
CREATE TABLE sis.payment_plans (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    term_id      bigint REFERENCES sis.terms (id),
    provider     text NOT NULL DEFAULT 'nelnet',
    external_ref text NOT NULL,
    plan_code    text NOT NULL,
    status       text NOT NULL CHECK (status IN ('active', 'cancelled', 'completed')),
    budget       numeric(12, 2) NOT NULL CHECK (budget >= 0),
    installments integer NOT NULL CHECK (installments BETWEEN 1 AND 24),
    enrolled_on  date NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now(),
    changed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, external_ref)
);
CREATE INDEX payment_plans_added ON sis.payment_plans (added_at);

-- Refunds of a credit balance paid out through a partner: the refund posting, and what the
-- partner answered; a failed one is charged back (a credit posting that restores the balance).
CREATE TABLE sis.refunds (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id                 bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    transaction_id            bigint REFERENCES sis.transactions (id),
    amount                    numeric(12, 2) NOT NULL CHECK (amount > 0),
    method                    text NOT NULL CHECK (method IN ('ach', 'check', 'card')),
    status                    text NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'exported', 'sent', 'failed')),
    exported_at               timestamptz,
    responded_at              timestamptz,
    response_code             text,
    response_message          text,
    chargeback_transaction_id bigint REFERENCES sis.transactions (id),
    created_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_status ON sis.refunds (status);

-- Financial-aid awards from an aid system (source 'regent', 'jfa', 'powerfaids', 'sis'):
-- processed_at stays NULL while the award waits to be processed into the student's account.
CREATE TABLE sis.aid_awards (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    award_year   text NOT NULL CHECK (award_year ~ '^[0-9]{4}-[0-9]{2}$'),
    term_id      bigint REFERENCES sis.terms (id),
    fund_code    text NOT NULL REFERENCES sis.transaction_codes (code),
    source       text NOT NULL,
    external_ref text NOT NULL,
    offered      numeric(12, 2) NOT NULL CHECK (offered >= 0),
    accepted     numeric(12, 2) NOT NULL DEFAULT 0 CHECK (accepted >= 0),
    status       text NOT NULL CHECK (status IN ('offered', 'accepted', 'declined', 'cancelled')),
    processed_at timestamptz,
    added_at     timestamptz NOT NULL DEFAULT now(),
    changed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_ref)
);
CREATE INDEX aid_awards_waiting ON sis.aid_awards (source) WHERE processed_at IS NULL;

CREATE TABLE sis.aid_disbursements (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    award_id       bigint NOT NULL REFERENCES sis.aid_awards (id) ON DELETE CASCADE,
    sequence       integer NOT NULL CHECK (sequence >= 1),
    amount         numeric(12, 2) NOT NULL CHECK (amount > 0),
    disbursed_on   date NOT NULL,
    transaction_id bigint REFERENCES sis.transactions (id),
    added_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (award_id, sequence)
);

-- Every partner file Belltower wrote, downloaded or imported: an occurrence that already wrote
-- its file writes it no more, a file already imported (same content) is not imported again, and
-- an export "since the last one" starts where the previous one ended (window_to).
CREATE TABLE sis.finance_files (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        text NOT NULL,
    occurrence_id text NOT NULL,
    partner       text NOT NULL,
    kind          text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('export', 'download', 'import')),
    file_name     text NOT NULL,
    sha256        text NOT NULL,
    rows          integer NOT NULL DEFAULT 0,
    window_from   timestamptz,
    window_to     timestamptz,
    status        text NOT NULL DEFAULT 'done' CHECK (status IN ('done', 'sent', 'failed')),
    detail        text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, occurrence_id, kind, file_name)
);
CREATE UNIQUE INDEX finance_files_imported ON sis.finance_files (partner, kind, sha256)
    WHERE direction = 'import';
CREATE UNIQUE INDEX finance_files_downloaded ON sis.finance_files (partner, kind, file_name)
    WHERE direction = 'download';
CREATE INDEX finance_files_job ON sis.finance_files (job_id, kind, created_at);
