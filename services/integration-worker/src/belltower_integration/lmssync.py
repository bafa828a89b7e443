"""What an LMS sync last made the LMS hold (``sis.lms_sync_records``), and the plan against it.

Each record is keyed by its SIS key within a kind (user, course, enrolment) and carries the
LMS's own id and a digest of the values sent. A run sends only what is new or changed since,
removes what is gone, and saves each record as soon as the LMS took it, so a run repeated after
a crash or a partial failure sends only what is still missing, and a repeated occurrence that
succeeded changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import safety

Stored = dict[str, dict[str, tuple[str | None, str]]]  # kind -> key -> (lms id, digest)


async def load(conn: Any, job_id: str) -> Stored:
    stored: Stored = {}
    rows = await conn.fetch(
        "SELECT kind, sis_key, lms_id, digest FROM sis.lms_sync_records WHERE job_id = $1", job_id
    )
    for r in rows:
        stored.setdefault(r["kind"], {})[r["sis_key"]] = (r["lms_id"], r["digest"])
    return stored


def change(stored: Stored, wanted: dict[str, dict[str, str]]) -> safety.Change:
    """Per kind, what is new, changed and gone: ``wanted`` is kind -> key -> digest."""
    return {
        kind: safety.diff(
            {k: d for k, (_, d) in stored.get(kind, {}).items()}, wanted.get(kind, {})
        )
        for kind in sorted(set(stored) | set(wanted))
    }


async def save(
    conn: Any, job_id: str, kind: str, rows: Iterable[tuple[str, str | None, str]]
) -> None:
    """Store records the LMS took: (SIS key, LMS id, digest)."""
    await conn.executemany(
        "INSERT INTO sis.lms_sync_records (job_id, kind, sis_key, lms_id, digest) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, kind, sis_key) DO UPDATE SET "
        "lms_id = EXCLUDED.lms_id, digest = EXCLUDED.digest, synced_at = now()",
        [(job_id, kind, key, lms_id, digest) for key, lms_id, digest in rows],
    )


async def forget(conn: Any, job_id: str, kind: str, keys: Iterable[str]) -> None:
    """Drop records the LMS no longer holds for this job."""
    await conn.execute(
        "DELETE FROM sis.lms_sync_records WHERE job_id = $1 AND kind = $2 AND sis_key = ANY($3::text[])",
        job_id,
        kind,
        list(keys),
    )
