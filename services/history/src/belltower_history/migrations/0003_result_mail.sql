-- Result e-mails waiting to go out (a transactional outbox: written in the same commit as the
-- run's finished row, sent afterwards, retried while the SMTP server is away).
CREATE TABLE history.mail_outbox (
    occurrence_id   uuid PRIMARY KEY REFERENCES history.runs (occurrence_id) ON DELETE CASCADE,
    run_id          uuid NOT NULL,
    recipients      text[] NOT NULL,
    subject         text NOT NULL,
    body_text       text NOT NULL,
    body_html       text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

CREATE INDEX mail_outbox_due ON history.mail_outbox (next_attempt_at) WHERE state = 'pending';
