-- Job state of the Ed-Fi Data Sync and the SONIS directory syncs (Mailchimp, Azure AD).
-- Not SIS data: a school mapping its own SIS onto the reference tables leaves these alone.

-- What an Ed-Fi Data Sync last sent and the ODS/API took, per job: each record by its Ed-Fi
-- resource (``students``, ``sections``, ...) and natural key, with a digest of the body sent.
-- A run sends only records that are new or whose digest changed; a repeat sends nothing.
CREATE TABLE sis.edfi_sync_records (
    job_id       text NOT NULL,
    resource     text NOT NULL,
    natural_key  text NOT NULL,
    digest       text NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, resource, natural_key)
);

-- Records the ODS/API refused (a validation error, an unresolved reference, a server that
-- kept failing): the next run of the job sends each again, in the server's dependency order,
-- before anything else of its resource, and drops the row once the server takes it.
CREATE TABLE sis.edfi_retries (
    job_id        text NOT NULL,
    resource      text NOT NULL,
    natural_key   text NOT NULL,
    attempts      integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    last_status   integer,
    last_error    text NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, resource, natural_key)
);

-- What a directory sync (Mailchimp list members, Azure AD users) last sent for a person, per
-- job and scope (the Mailchimp list id; '' for Azure AD): the outside system's key for them
-- (Mailchimp's subscriber hash, the Entra user id) and a digest of the values sent. A person
-- whose email address or name changed is sent again; one the outside system refused has no new
-- row here, so the next run tries them again.
CREATE TABLE sis.directory_sync_records (
    job_id       text NOT NULL,
    scope        text NOT NULL DEFAULT '',
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    remote_key   text NOT NULL,
    digest       text NOT NULL,
    synced_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, scope, person_id)
);

-- The Mailchimp lists a person is on (the seed's "enabled list record"): a person with an
-- enabled row is synced to that Mailchimp audience (list id); a disabled row unsubscribes them.
CREATE TABLE sis.mailing_list_members (
    person_id    bigint NOT NULL REFERENCES sis.people (id) ON DELETE CASCADE,
    list_id      text NOT NULL CHECK (list_id ~ '^[A-Za-z0-9]{1,32}$'),
    enabled      boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, list_id)
);
CREATE INDEX mailing_list_members_list ON sis.mailing_list_members (list_id) WHERE enabled;
