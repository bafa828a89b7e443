-- The fencing token of each scheduler partition's current lease holder (see lease.py): the
-- dispatcher's ledger transactions check it, so a deposed replica cannot plan occurrences.
CREATE TABLE scheduler.leases (
    partition_key text PRIMARY KEY,
    token         bigint NOT NULL,
    holder        text NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now()
);
