-- The scheduler's job alerts (failing, recovered) are mailed through the result-mail outbox too:
-- one row per occurrence and kind, so a failed run can have its result mail and the failing
-- alert it caused. 'result' is the run's own result mail.
ALTER TABLE history.mail_outbox ADD COLUMN kind text NOT NULL DEFAULT 'result'
    CHECK (kind IN ('result', 'failing', 'recovered'));
ALTER TABLE history.mail_outbox DROP CONSTRAINT mail_outbox_pkey;
ALTER TABLE history.mail_outbox ADD PRIMARY KEY (occurrence_id, kind);
