-- What a notifier that acts (copies an address, expires a PIN, imports a prospect, deletes old
-- records) did, by occurrence: written in the same transaction as the change, so a redelivered
-- occurrence finds nothing left to do and reports what the first delivery did.
CREATE TABLE notifier.actions (
    occurrence_id text NOT NULL,
    job_id        text NOT NULL,
    item_key      text NOT NULL,
    person_id     bigint,
    detail        jsonb NOT NULL,
    done_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (occurrence_id, item_key)
);
CREATE INDEX actions_done ON notifier.actions (done_at);
