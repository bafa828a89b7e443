"""Imports in batches: checked jobs wait in ``scheduler.import_staging`` under the import's id
until one transaction applies them all, or the import is discarded (migration 0009).

An import of 100,000 jobs cannot be one NATS message; sent in batches of a few hundred, each
batch is checked as ``jobs.import`` checks documents and staged, and ``jobs.import_finish``
applies or drops the whole import, so the all-or-nothing promise of an import holds at any size.
Staged rows older than ``STALE`` (a client that went away) are dropped by the next batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from .store import JOB_COLUMNS, JobRow, _job_args

STALE = timedelta(hours=1)
_COLUMNS = (
    "id", "title", "type", "pool", "params", "schedule", "priority", "paused",
    "keep_history_days", "timeout_s", "next_run_at", "created_at", "updated_at", "policy",
    "result_mail",
)  # fmt: skip
_CHANGED = ", ".join(f"{c} = s.{c}" for c in _COLUMNS if c != "id")


class StagedImports:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def stage(self, import_id: str, staged: Sequence[tuple[str, int, JobRow]]) -> set[str]:
        """Stage (action, document index, row) triples; returns the ids already staged in this
        import (the same job twice), which are not staged again."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM scheduler.import_staging WHERE staged_at < now() - $1::interval",
                STALE,
            )
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS staging_in "
                "(LIKE scheduler.import_staging) ON COMMIT DROP"
            )
            await conn.copy_records_to_table(
                "staging_in",
                columns=["import_id", "action", "doc_index", "staged_at", *_COLUMNS],
                records=[
                    (import_id, action, index, row.updated_at, *_job_args(row))
                    for action, index, row in staged
                ],
            )
            inserted = await conn.fetch(
                "INSERT INTO scheduler.import_staging SELECT * FROM staging_in "
                "ON CONFLICT (import_id, id) DO NOTHING RETURNING id::text AS id"
            )
        kept = {r["id"] for r in inserted}
        return {row.id for _, _, row in staged} - kept

    async def commit(self, import_id: str) -> list[JobRow]:
        """Apply the import's staged creates and changes in one transaction; the rows applied."""
        cols = ", ".join(_COLUMNS)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO scheduler.jobs ({cols}) SELECT {cols} FROM scheduler.import_staging "
                "WHERE import_id = $1::uuid AND action = 'create' ORDER BY id",
                import_id,
            )
            await conn.execute(
                f"UPDATE scheduler.jobs j SET {_CHANGED} FROM scheduler.import_staging s "
                "WHERE s.import_id = $1::uuid AND s.action = 'change' AND j.id = s.id",
                import_id,
            )
            rows = await conn.fetch(
                f"SELECT {JOB_COLUMNS} FROM scheduler.jobs WHERE id IN (SELECT id FROM "
                "scheduler.import_staging WHERE import_id = $1::uuid AND action <> 'unchanged')",
                import_id,
            )
            await conn.execute(
                "DELETE FROM scheduler.import_staging WHERE import_id = $1::uuid", import_id
            )
        return [JobRow.from_record(r) for r in rows]

    async def discard(self, import_id: str) -> int:
        status = await self.pool.execute(
            "DELETE FROM scheduler.import_staging WHERE import_id = $1::uuid", import_id
        )
        return int(status.split()[-1])

    async def count(self, import_id: str) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT action, count(*) AS n FROM scheduler.import_staging "
            "WHERE import_id = $1::uuid GROUP BY action",
            import_id,
        )
        return {r["action"]: r["n"] for r in rows}
