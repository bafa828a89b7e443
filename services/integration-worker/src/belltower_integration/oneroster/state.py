"""The OneRoster export's snapshots in ``sis.oneroster_snapshots`` / ``sis.oneroster_records``.

The base of a run is the job's latest snapshot of another occurrence, so an occurrence run
again (a redelivery, a retry after a crash) is computed against the same base as the first
time and writes the same set. Saving replaces this occurrence's snapshot and prunes all but it
and its base.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .delta import Snapshot

BASE_SQL = """
SELECT occurrence_id FROM sis.oneroster_snapshots
 WHERE job_id = $1 AND occurrence_id <> $2
 ORDER BY taken_for DESC, saved_at DESC LIMIT 1
"""
RECORDS_SQL = """
SELECT file, sourced_id, record, modified_at FROM sis.oneroster_records
 WHERE job_id = $1 AND occurrence_id = $2
"""
PRUNE_SQL = """
DELETE FROM sis.oneroster_snapshots
 WHERE job_id = $1 AND occurrence_id <> $2 AND occurrence_id IS DISTINCT FROM $3
"""


async def load_base(
    conn: Any, job_id: str, occurrence_id: str
) -> tuple[str | None, Snapshot | None]:
    """The occurrence id and snapshot the run compares against, or (None, None) for a first run."""
    base_id = await conn.fetchval(BASE_SQL, job_id, occurrence_id)
    if base_id is None:
        return None, None
    snapshot = Snapshot()
    for r in await conn.fetch(RECORDS_SQL, job_id, base_id):
        snapshot.files.setdefault(r["file"], {})[r["sourced_id"]] = (
            tuple(r["record"]),
            r["modified_at"],
        )
    return base_id, snapshot


async def save(conn: Any, job_id: str, occurrence_id: str, base_id: str | None,
               taken_for: datetime, mode: str, snapshot: Snapshot) -> None:  # fmt: skip
    """Store ``snapshot`` as this occurrence's, in one transaction."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM sis.oneroster_snapshots WHERE job_id = $1 AND occurrence_id = $2",
            job_id,
            occurrence_id,
        )
        await conn.execute(
            "INSERT INTO sis.oneroster_snapshots (job_id, occurrence_id, taken_for, mode) "
            "VALUES ($1, $2, $3, $4)",
            job_id,
            occurrence_id,
            taken_for,
            mode,
        )
        await conn.copy_records_to_table(
            "oneroster_records",
            schema_name="sis",
            columns=["job_id", "occurrence_id", "file", "sourced_id", "record", "modified_at"],
            records=[
                (job_id, occurrence_id, name, sid, list(values), modified)
                for name, records in snapshot.files.items()
                for sid, (values, modified) in records.items()
            ],
        )
        await conn.execute(PRUNE_SQL, job_id, occurrence_id, base_id)
