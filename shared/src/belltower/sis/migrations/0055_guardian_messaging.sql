-- Messaging guardians: their contact permission and SMS consent, per-phone SMS opt-outs, the
-- provider's receipt for each text, and what the seeds' messaging jobs queue from (student
-- notifications for parents, unread SSS alerts, attendance marks that trigger a text).

-- May the school contact this guardian about this student (a custody order can say no), and
-- has the guardian agreed to texts on their phone.
ALTER TABLE sis.student_guardians ADD COLUMN contact_allowed boolean NOT NULL DEFAULT true;
ALTER TABLE sis.guardians ADD COLUMN sms_ok boolean NOT NULL DEFAULT false;

-- Numbers that must not be texted: the recipient replied STOP (the provider answered 21610),
-- or the school recorded it. Keyed by the number in E.164 form.
CREATE TABLE sis.sms_opt_outs (
    phone       text PRIMARY KEY CHECK (phone ~ '^\+[1-9][0-9]{1,14}$'),
    source      text NOT NULL CHECK (source IN ('provider', 'school')),
    reason      text NOT NULL DEFAULT '',
    opted_out_at timestamptz NOT NULL DEFAULT now()
);

-- Who a queued message is for, and a key that makes queueing it twice a no-op (a producer run
-- redelivered queues nothing new).
ALTER TABLE sis.communication_queue
    ADD COLUMN guardian_id bigint REFERENCES sis.guardians (id) ON DELETE SET NULL,
    ADD COLUMN source_key  text UNIQUE;

-- The provider's receipt: its message id and the delivery status last reported.
ALTER TABLE sis.outbox
    ADD COLUMN provider_sid text UNIQUE,
    ADD COLUMN status       text,
    ADD COLUMN error_code   integer,
    ADD COLUMN status_at    timestamptz;
CREATE INDEX outbox_pending_status ON sis.outbox (recorded_at)
    WHERE provider_sid IS NOT NULL AND status IN ('accepted', 'queued', 'sending', 'sent', 'scheduled');

-- Notifications about a student for the student and their parents (the seeds' Email
-- Notifications): attendance, billing fees, grades, discipline, assignments, events.
CREATE TABLE sis.student_notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    student_id  bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    category    text NOT NULL CHECK (category IN
                  ('attendance', 'billing', 'grades', 'discipline', 'assignments', 'events')),
    subject     text NOT NULL,
    body_text   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    queued_at   timestamptz
);
CREATE INDEX student_notifications_waiting ON sis.student_notifications (created_at)
    WHERE queued_at IS NULL;

-- Student Support Services alerts shown in the parent portal; a parent is e-mailed about one
-- left unread (the seeds' SSS Parent Portal Notifications).
CREATE TABLE sis.sss_alerts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    student_id         bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    title              text NOT NULL,
    body_text          text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    read_at            timestamptz,
    parent_emailed_at  timestamptz
);
CREATE INDEX sss_alerts_unread ON sis.sss_alerts (created_at)
    WHERE read_at IS NULL AND parent_emailed_at IS NULL;

-- The attendance marks that text a student's guardians (the seeds' Attendance Mobile Alert).
INSERT INTO sis.school_preferences (key, value) VALUES ('attendance_sms_marks', 'absent')
    ON CONFLICT (key) DO NOTHING;

-- Automated cron messages (the seeds' Automated Emails): an e-mail sent to the people of some
-- statuses, and optionally their guardians, whenever its cron expression (five fields, in the
-- school's time zone) comes due. next_send_at is when it is next due (NULL: from the next run on).
CREATE TABLE sis.automated_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code          text NOT NULL UNIQUE,
    subject       text NOT NULL,
    body_text     text NOT NULL,
    cron          text NOT NULL,
    statuses      text[] NOT NULL DEFAULT '{student}',
    to_people     boolean NOT NULL DEFAULT true,
    to_guardians  boolean NOT NULL DEFAULT false,
    active        boolean NOT NULL DEFAULT true,
    next_send_at  timestamptz,
    last_sent_at  timestamptz
);
