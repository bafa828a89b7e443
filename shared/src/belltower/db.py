"""PostgreSQL access: connection pools and versioned schema migrations applied at start.

Each service owns one schema and ships its migrations as numbered SQL files in its package
(``migrations/0001_initial.sql``). They run in order, each once, inside a transaction and under
an advisory lock, so replicas starting together do not race. A hand-written runner of forty
lines serves better here than Alembic, which would bring SQLAlchemy for plain SQL files.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from importlib import resources

import asyncpg

from .errors import Unavailable

log = logging.getLogger(__name__)


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, attempts: int = 30
) -> asyncpg.Pool:
    """A pool to ``url``, retrying while the server starts; Unavailable names the URL if it never does."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await asyncpg.create_pool(
                url, min_size=min_size, max_size=max_size, command_timeout=60
            )
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
            last = exc
            await asyncio.sleep(1)
        except asyncpg.InvalidCatalogNameError as exc:
            raise Unavailable(
                f"database in {_safe(url)} does not exist ({exc}); create it or fix BELLTOWER_DATABASE_URL"
            ) from None
    raise Unavailable(
        f"cannot reach PostgreSQL at {_safe(url)} ({last}); is it running? set BELLTOWER_DATABASE_URL"
    )


def _safe(url: str) -> str:
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        user = rest.split(":", 1)[0]
        return f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
    return url


async def migrate(pool: asyncpg.Pool, schema: str, package: str) -> list[int]:
    """Apply the package's ``migrations/*.sql`` not yet applied to ``schema``; returns the versions applied."""
    files = sorted(
        (int(f.name.split("_", 1)[0]), f.name, f)
        for f in resources.files(package).joinpath("migrations").iterdir()
        if f.name.endswith(".sql")
    )
    lock = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)
    applied: list[int] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations "
                "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["version"]
                for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
            }
            for version, name, file in files:
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(file.read_text())
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                log.info(
                    "migration applied",
                    extra={"action": "db.migrate", "schema": schema, "migration": name},
                )
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied
