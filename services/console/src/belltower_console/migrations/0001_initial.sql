-- Local users; passwords are argon2id hashes (argon2-cffi).
CREATE TABLE console.users (
    username      text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'editor', 'admin')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- API tokens for scripts. Only a SHA-256 of the secret is kept: the secret is 256 random bits,
-- so a slow password hash would add nothing but latency to every request.
CREATE TABLE console.tokens (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    username     text NOT NULL REFERENCES console.users (username) ON DELETE CASCADE,
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Console sessions, by SHA-256 of the cookie's random id; each carries its CSRF token.
CREATE TABLE console.sessions (
    id_hash    bytea PRIMARY KEY,
    username   text NOT NULL REFERENCES console.users (username) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    client     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON console.sessions (expires_at);

-- Every change, login and denied attempt. Append-only: the triggers below refuse UPDATE,
-- DELETE and TRUNCATE, whoever asks.
CREATE TABLE console.audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor   text,
    role    text,
    client  text,
    action  text NOT NULL,
    target  text,
    outcome text NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    detail  text,
    before  jsonb,
    after   jsonb
);
CREATE INDEX audit_at ON console.audit (at DESC);
CREATE INDEX audit_actor ON console.audit (actor, at DESC);
CREATE INDEX audit_action ON console.audit (action, at DESC);

CREATE FUNCTION console.audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'console.audit is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON console.audit
    FOR EACH ROW EXECUTE FUNCTION console.audit_is_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON console.audit
    FOR EACH STATEMENT EXECUTE FUNCTION console.audit_is_append_only();
