"""Loading the demo school: ``COPY`` into the ``sis`` schema, which is migrated first."""

from __future__ import annotations

import asyncio
from datetime import date

import asyncpg

from belltower import sis
from belltower.errors import InvalidInput

from .codes import DEFAULT_SEED
from .model import DemoData, DemoSize
from .school import generate

_SEQUENCED = (
    "divisions", "campuses", "levels", "departments", "people", "terms", "courses", "sections",
    "enrollments", "notification_groups", "guardians", "forms", "graduation_requirements",
    "combined_gradebooks", "aid_awards",
    "erp_cash_drawers", "erp_automatic_invoices", "erp_invoices", "erp_programs", "erp_fee_templates",
    "erp_field_trips",
)  # fmt: skip


async def load(
    conn: asyncpg.Connection, data: DemoData, *, replace: bool = False
) -> dict[str, int]:
    """COPY the demo rows into the ``sis`` schema in one transaction; returns rows per table.

    Refuses a database that already holds people unless ``replace`` (which empties every
    ``sis`` table first), so demo data never mixes with a school's own.
    """
    async with conn.transaction():
        if replace:
            names = [f"sis.{t}" for t in reversed(data.tables)] + ["sis.reminders"]
            await conn.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
        elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sis.people)"):
            raise InvalidInput(
                "sis.people",
                "the SIS schema already holds people",
                "an empty SIS, or replace=True (--replace)",
            )
        counts = {}
        for table, (columns, rows) in data.tables.items():
            await conn.copy_records_to_table(
                table, schema_name="sis", columns=columns, records=rows
            )
            counts[table] = len(rows)
        for table in _SEQUENCED:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('sis.{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM sis.{table}), 0) + 1, false)"
            )
    return counts


async def install(
    url: str,
    *,
    today: date | None = None,
    seed: int = DEFAULT_SEED,
    size: DemoSize | None = None,
    replace: bool = False,
) -> dict[str, int]:
    """Migrate the ``sis`` schema at ``url`` and load the demo school into it."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await sis.migrate(pool)
        data = await asyncio.to_thread(generate, today, seed=seed, size=size)
        async with pool.acquire() as conn:
            return await load(conn, data, replace=replace)
    finally:
        await pool.close()
