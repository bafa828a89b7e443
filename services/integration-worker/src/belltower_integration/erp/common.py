"""What the district-wide ERP jobs share: one transaction for the run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def district_transaction(
    pool: asyncpg.Pool, lock: str, dry_run: bool
) -> AsyncIterator[asyncpg.Connection]:
    """A connection in one transaction under an advisory lock on ``lock`` (two overlapping runs
    queue up); committed when the block ends, rolled back on an error or with ``dry_run``."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
            yield conn
        except BaseException:
            await tx.rollback()
            raise
        if dry_run:
            await tx.rollback()
        else:
            await tx.commit()
