-- What the notifiers remember between runs; not SIS data, so it lives in its own schema.

-- "Since the last run": the instant up to which a job has told everyone. A run first fixes its
-- window's end (pending_until, keyed by its occurrence so a redelivery reuses it) and only a
-- successful run moves the mark to it.
CREATE TABLE notifier.watermarks (
    job_id             text PRIMARY KEY,
    job_type           text NOT NULL,
    mark               timestamptz,
    pending_occurrence text,
    pending_until      timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- "Once per person and item": each (recipient, item) a job has told, never told again.
CREATE TABLE notifier.sent_items (
    job_id        text NOT NULL,
    recipient     text NOT NULL,
    item_key      text NOT NULL,
    occurrence_id text NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, recipient, item_key)
);

-- Every message delivered, by occurrence: a redelivered occurrence skips who already has it.
CREATE TABLE notifier.deliveries (
    occurrence_id text NOT NULL,
    recipient     text NOT NULL,
    channel       text NOT NULL CHECK (channel IN ('email', 'reminder')),
    job_id        text NOT NULL,
    address       text,
    items         integer NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (occurrence_id, recipient, channel)
);
CREATE INDEX deliveries_job ON notifier.deliveries (job_id, sent_at);
