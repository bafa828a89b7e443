"""``python -m belltower.sis``: create or upgrade the reference SIS schema, loading no rows.

For a school that starts from the empty reference schema (docs/sis-schema.md) at
``BELLTOWER_DATABASE_URL``; ``make dev`` loads the demo school into it instead.
"""

from __future__ import annotations

import asyncio

import asyncpg

from ..settings import get_settings
from . import migrate


async def migrate_schema(url: str) -> list[int]:
    """Apply the ``sis`` migrations the database at ``url`` lacks; returns their versions."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        return await migrate(pool)
    finally:
        await pool.close()


def main() -> None:
    applied = asyncio.run(migrate_schema(get_settings().database_url))
    print(f"sis migrations applied: {applied or 'none (up to date)'}")


if __name__ == "__main__":
    main()
