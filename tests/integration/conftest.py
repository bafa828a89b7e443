"""Fixtures for tests of one service's parts against real NATS and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
from nats.aio.client import Client

from belltower import streams
from belltower.settings import Settings
from tests.helpers.worker import worker  # noqa: F401  (the worker fixture, for test_worker and test_retries)


@pytest.fixture(scope="session")
def template_database(template_database: str, pg_server) -> str:
    """The session template with every service's schema migrated, so each test's clone has them."""
    import asyncio

    from belltower.db import migrate

    async def apply() -> None:
        pool = await asyncpg.create_pool(pg_server.url(template_database), min_size=1, max_size=1)
        try:
            await migrate(pool, "scheduler", "belltower_scheduler")
            await migrate(pool, "history", "belltower_history")
        finally:
            await pool.close()

    asyncio.run(apply())
    return template_database


@pytest.fixture
def settings(fresh_nats, database_url: str, tmp_batch_folder) -> Settings:
    return Settings(
        nats_url=fresh_nats.url,
        database_url=database_url,
        batch_folder=tmp_batch_folder,
        ack_wait_s=2.0,
        worker_concurrency=8,
    )


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[Client]:
    client = await nats.connect(settings.nats_url)
    await streams.ensure(client.jetstream(), settings)
    yield client
    await client.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    db = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield db
    await db.close()
