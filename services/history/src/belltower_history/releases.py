"""History's record of releases of held runs (``history.run_releases``).

A held run is released at most once: the first release inserts its row, a second one finds
that row and answers it with ``first=False``, so the console starts no second run for it.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from belltower.errors import Conflict, NotFound
from belltower.holds import Release, ReleaseRequest, ReleasesQuery, ReleaseStarted

_COLUMNS = (
    "run_id::text AS run_id, job_id::text AS job_id, released_by, released_from, released_at, "
    "release_run_id::text AS release_run_id"
)
_INSERT = f"""
INSERT INTO history.run_releases (run_id, job_id, released_by, released_from)
SELECT run_id, job_id, $2, $3 FROM history.runs WHERE run_id = $1::uuid AND status = 'held'
ON CONFLICT (run_id) DO NOTHING
RETURNING {_COLUMNS}
"""


def _release(row: Any, first: bool = True) -> Release:
    return Release(first=first, **dict(row))


async def release(pool: asyncpg.Pool, request: ReleaseRequest) -> Release:
    """Record the release of a held run, once; a run that is not held is refused."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            _INSERT, request.run_id, request.released_by, request.released_from
        )
        if row is not None:
            return _release(row)
        earlier = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM history.run_releases WHERE run_id = $1::uuid", request.run_id
        )
        if earlier is not None:
            return _release(earlier, first=False)
        status = await conn.fetchval(
            "SELECT status FROM history.runs WHERE run_id = $1::uuid", request.run_id
        )
    if status is None:
        raise NotFound(
            f"no run with id {request.run_id}; it may not have finished yet, or was purged"
        )
    raise Conflict(
        f"run {request.run_id} is {status}, not held: only a run held by its safety thresholds "
        "can be released"
    )


async def started(pool: asyncpg.Pool, request: ReleaseStarted) -> Release:
    row = await pool.fetchrow(
        "UPDATE history.run_releases SET release_run_id = COALESCE(release_run_id, $2::uuid) "
        f"WHERE run_id = $1::uuid RETURNING {_COLUMNS}",
        request.run_id,
        request.release_run_id,
    )
    if row is None:
        raise NotFound(f"run {request.run_id} has not been released")
    return _release(row)


async def of_job(pool: asyncpg.Pool, query: ReleasesQuery) -> list[Release]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM history.run_releases WHERE job_id = $1::uuid "
        "ORDER BY released_at DESC LIMIT $2",
        query.job_id,
        query.limit,
    )
    return [_release(r) for r in rows]
