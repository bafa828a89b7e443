"""What a directory sync (Mailchimp, Azure AD) last sent for each person
(``sis.directory_sync_records``): a run sends a person again only when what it would send
changed, so a repeat of a run sends nothing, and a person the other side refused is tried again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Stored = dict[int, tuple[str, str]]  # person id -> (remote key, digest)


async def load(conn: Any, job_id: str, scope: str = "") -> Stored:
    rows = await conn.fetch(
        "SELECT person_id, remote_key, digest FROM sis.directory_sync_records"
        " WHERE job_id = $1 AND scope = $2",
        job_id,
        scope,
    )
    return {r["person_id"]: (r["remote_key"], r["digest"]) for r in rows}


async def save(conn: Any, job_id: str, scope: str, rows: Iterable[tuple[int, str, str]]) -> None:
    """Store what the other side took: (person id, remote key, digest), in one transaction."""
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO sis.directory_sync_records (job_id, scope, person_id, remote_key, digest)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, scope, person_id) DO UPDATE SET"
            " remote_key = EXCLUDED.remote_key, digest = EXCLUDED.digest, synced_at = now()",
            [(job_id, scope, p, k, d) for p, k, d in rows],
        )
