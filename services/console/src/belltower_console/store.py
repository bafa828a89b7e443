"""The console's SQL, in schema ``console``: users, API tokens, sessions and the audit log.

The console keeps no job or run state: that stays with the scheduler and history.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

ROLES = ("viewer", "operator", "editor", "admin")
ONEROSTER_CLIENT = "oneroster:"
"""An API token whose name starts so is a OneRoster client's credentials (client id = the
token's id, client secret = its secret): it gets OAuth 2 access tokens for the OneRoster
provider and is refused as a bearer token on ``/api/v1``."""


def rank(role: str) -> int:
    return ROLES.index(role)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user, through a session (with its CSRF token) or an API token."""

    username: str
    role: str
    via: str
    csrf_token: str | None = None

    def may(self, role: str) -> bool:
        return rank(self.role) >= rank(role)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str | None
    action: str
    outcome: str = "ok"
    role: str | None = None
    client: str | None = None
    target: str | None = None
    detail: str | None = None
    before: Any = None
    after: Any = None


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can store: a NUL or a lone surrogate (from a hostile request) becomes
    U+FFFD, so recording the attempt never fails."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _json(value: Any) -> str | None:
    if value is None:
        return None
    # jsonb refuses the escape of NUL as it refuses NUL itself.
    text = json.dumps(value, default=str, ensure_ascii=False).replace("\\u0000", "\\ufffd")
    return _text(text)


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- users ----------------------------------------------------------------------------------

    async def count_users(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM console.users"))

    async def user(self, username: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT username, password_hash, role, disabled, created_at, updated_at "
            "FROM console.users WHERE username = $1",
            username,
        )

    async def users(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT username, role, disabled, created_at, updated_at FROM console.users ORDER BY username"
        )

    async def add_user(self, username: str, password_hash: str, role: str) -> bool:
        status = await self.pool.execute(
            "INSERT INTO console.users (username, password_hash, role) VALUES ($1, $2, $3) "
            "ON CONFLICT (username) DO NOTHING",
            username,
            password_hash,
            role,
        )
        return status.endswith(" 1")

    async def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE console.users SET role = COALESCE($2, role), "
                "password_hash = COALESCE($3, password_hash), disabled = COALESCE($4, disabled), "
                "updated_at = now() WHERE username = $1",
                username,
                role,
                password_hash,
                disabled,
            )
            if password_hash is not None or disabled or role is not None:
                # A changed password, role or a disabled account ends the user's sessions.
                await conn.execute("DELETE FROM console.sessions WHERE username = $1", username)

    # -- tokens ---------------------------------------------------------------------------------

    async def add_token(self, username: str, name: str, expires_at: datetime) -> tuple[str, str]:
        """A new token's id and its secret: the secret is returned once and stored only hashed."""
        token_id = str(uuid.uuid4())
        secret = "bt_" + secrets.token_urlsafe(32)
        await self.pool.execute(
            "INSERT INTO console.tokens (id, name, username, secret_hash, expires_at) "
            "VALUES ($1::uuid, $2, $3, $4, $5)",
            token_id,
            name,
            username,
            digest(secret),
            expires_at,
        )
        return token_id, secret

    async def tokens(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id::text AS id, name, username, created_at, expires_at, revoked_at, last_used_at "
            "FROM console.tokens ORDER BY created_at DESC"
        )

    async def revoke_token(self, token_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "UPDATE console.tokens SET revoked_at = now() WHERE id = $1::uuid AND revoked_at IS NULL "
            "RETURNING id::text AS id, name, username",
            token_id,
        )

    async def principal_for_token(self, secret: str) -> Principal | None:
        row = await self.pool.fetchrow(
            "UPDATE console.tokens t SET last_used_at = now() FROM console.users u "
            "WHERE t.secret_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now() "
            "AND u.username = t.username AND NOT u.disabled AND t.name NOT LIKE $2 "
            "RETURNING u.username, u.role",
            digest(secret),
            ONEROSTER_CLIENT + "%",
        )
        return Principal(row["username"], row["role"], "token") if row else None

    # -- sessions -------------------------------------------------------------------------------

    async def add_session(
        self, username: str, client: str | None, ttl: timedelta
    ) -> tuple[str, str]:
        """A new session's cookie value and CSRF token."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        await self.pool.execute(
            "INSERT INTO console.sessions (id_hash, username, csrf_token, client, expires_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            digest(session_id),
            username,
            csrf,
            client,
            datetime.now(UTC) + ttl,
        )
        await self.pool.execute("DELETE FROM console.sessions WHERE expires_at < now()")
        return session_id, csrf

    async def principal_for_session(self, session_id: str) -> Principal | None:
        row = await self.pool.fetchrow(
            "SELECT u.username, u.role, s.csrf_token FROM console.sessions s "
            "JOIN console.users u ON u.username = s.username "
            "WHERE s.id_hash = $1 AND s.expires_at > now() AND NOT u.disabled",
            digest(session_id),
        )
        return (
            Principal(row["username"], row["role"], "session", row["csrf_token"]) if row else None
        )

    async def end_session(self, session_id: str) -> None:
        await self.pool.execute(
            "DELETE FROM console.sessions WHERE id_hash = $1", digest(session_id)
        )

    # -- audit ----------------------------------------------------------------------------------

    async def audit(self, entry: AuditEntry) -> None:
        await self.pool.execute(
            "INSERT INTO console.audit (actor, role, client, action, target, outcome, detail, before, after) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)",
            _text(entry.actor),
            entry.role,
            _text(entry.client),
            entry.action,
            _text(entry.target),
            entry.outcome,
            _text(entry.detail),
            _json(entry.before),
            _json(entry.after),
        )

    async def failed_logins_for_account(
        self, username: str, within: timedelta, action: str = "login"
    ) -> tuple[int, datetime | None]:
        """Failed logins (or other ``action``, e.g. ``oneroster.token``) for a user name within
        ``within``, since its last successful one or password reset, and when the last one was."""
        row = await self.pool.fetchrow(
            "SELECT count(*) AS n, max(at) AS last FROM console.audit "
            "WHERE action = $3 AND outcome = 'failed' AND actor = $1 "
            "AND at > now() - $2::interval AND at > coalesce(("
            "  SELECT max(at) FROM console.audit WHERE outcome = 'ok' AND target = $1 AND ("
            "    action = $3 OR (action = 'users.update' AND after->>'password' = 'changed')"
            "    OR action = 'login.reset')), '-infinity')",
            _text(username),
            within,
            action,
        )
        return int(row["n"]), row["last"]

    async def failed_logins_from(
        self, client: str, within: timedelta, action: str = "login"
    ) -> tuple[int, datetime | None]:
        """Failed logins (or ``action``) from one address within ``within``, and when the last
        one was."""
        row = await self.pool.fetchrow(
            "SELECT count(*) AS n, max(at) AS last FROM console.audit "
            "WHERE action = $3 AND outcome = 'failed' AND client = $1 "
            "AND at > now() - $2::interval",
            _text(client),
            within,
            action,
        )
        return int(row["n"]), row["last"]

    # -- OneRoster clients (API tokens named "oneroster: ...") -----------------------------------

    async def oneroster_client(self, client_id: str) -> asyncpg.Record | None:
        """The API token ``client_id`` when it is a live OneRoster client (named ``oneroster:``,
        not revoked or expired, its user not disabled): its name, user and secret's hash."""
        try:
            uuid.UUID(client_id)
        except ValueError:
            return None
        return await self.pool.fetchrow(
            "SELECT t.id::text AS id, t.name, t.username, t.secret_hash, t.expires_at "
            "FROM console.tokens t JOIN console.users u ON u.username = t.username "
            "WHERE t.id = $1::uuid AND t.name LIKE $2 AND t.revoked_at IS NULL "
            "AND t.expires_at > now() AND NOT u.disabled",
            client_id,
            ONEROSTER_CLIENT + "%",
        )

    async def oneroster_client_used(self, client_id: str) -> None:
        await self.pool.execute(
            "UPDATE console.tokens SET last_used_at = now() WHERE id = $1::uuid", client_id
        )

    async def revoke_user_tokens(self, username: str) -> int:
        status = await self.pool.execute(
            "UPDATE console.tokens SET revoked_at = now() WHERE username = $1 AND revoked_at IS NULL",
            username,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def audit_log(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Entries newest first matching every filter given, and how many match in all."""
        where, args = [], []
        for sql, value in (
            ("actor = ${}", actor),
            ("action LIKE ${} || '%'", action),
            ("outcome = ${}", outcome),
            ("at >= ${}", since),
            ("at < ${}", until),
            (
                "(coalesce(target, '') || ' ' || coalesce(detail, '') || ' ' || "
                "coalesce(before::text, '') || ' ' || coalesce(after::text, '')) ILIKE '%' || ${} || '%'",
                text,
            ),
        ):
            if value not in (None, ""):
                args.append(value)
                where.append(sql.format(len(args)))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = await self.pool.fetchval(f"SELECT count(*) FROM console.audit{clause}", *args)
        rows = await self.pool.fetch(
            "SELECT id, at, actor, role, client, action, target, outcome, detail, "
            f"before::text AS before, after::text AS after FROM console.audit{clause} "
            f"ORDER BY id DESC LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args,
            limit,
            offset,
        )
        out = []
        for r in rows:
            item = dict(r)
            item["before"] = json.loads(item["before"]) if item["before"] else None
            item["after"] = json.loads(item["after"]) if item["after"] else None
            out.append(item)
        return out, int(total)
