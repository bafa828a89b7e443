"""Fixtures every test tier shares: real NATS, PostgreSQL and SMTP servers, never mocks.

Each server comes from the first source that is available:

1. a URL in the environment (``BELLTOWER_TEST_NATS_URL``, ``BELLTOWER_TEST_DATABASE_URL``),
   e.g. CI service containers;
2. testcontainers, when a Docker engine answers;
3. a server these fixtures start themselves on a free port with temporary storage.

Tests that kill and restart the broker use ``fresh_nats``, always a private local server.
Each test that touches PostgreSQL gets its own database cloned from ``belltower_template``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

import pytest

from belltower_dev import localservers
from belltower_dev.localservers import (
    MailSink,
    NatsServer,
    PostgresServer,
    create_database,
    drop_database,
)

TEMPLATE_DATABASE = "belltower_template"


class NatsEndpoint(Protocol):
    @property
    def url(self) -> str: ...


class PostgresEndpoint(Protocol):
    def url(self, dbname: str = ...) -> str: ...


@dataclass(frozen=True)
class ExternalNats:
    """A NATS server these fixtures did not start: it cannot be killed or restarted."""

    url: str


@dataclass(frozen=True)
class ExternalPostgres:
    """A PostgreSQL server these fixtures did not start; ``admin_url`` may create databases."""

    admin_url: str

    def url(self, dbname: str | None = None) -> str:
        if dbname is None:
            return self.admin_url
        return localservers.database_url(self.admin_url, dbname)


@functools.cache
def docker_answers() -> bool:
    """Whether a Docker engine answers a ping; false quickly on machines without one."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsEndpoint]:
    """The NATS JetStream server shared by the session; use ``.url``."""
    if url := os.environ.get("BELLTOWER_TEST_NATS_URL"):
        yield ExternalNats(url)
    elif docker_answers():
        from testcontainers.nats import NatsContainer

        with NatsContainer().with_command("-js") as container:
            yield ExternalNats(container.nats_uri())
    else:
        with NatsServer() as server:
            yield server


@pytest.fixture
def fresh_nats() -> Iterator[NatsServer]:
    """A private NATS JetStream server with its own temporary store, for one test.

    For isolation and for fault tests: ``kill()``, ``restart()`` (same port and store),
    ``stop()``, ``url``, ``store_dir``.
    """
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresEndpoint]:
    """The PostgreSQL server shared by the session; ``url(dbname)`` reaches a database on it."""
    if url := os.environ.get("BELLTOWER_TEST_DATABASE_URL"):
        yield ExternalPostgres(url)
    elif docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield ExternalPostgres(container.get_connection_url())
    else:
        with PostgresServer(fsync=False) as server:
            yield server


@pytest.fixture(scope="session")
def template_database(pg_server: PostgresEndpoint) -> Iterator[str]:
    """Name of the session's template database, which ``database_url`` clones for each test.

    It is created empty; schema migrations are to be applied to it here, once per session,
    so every test starts from a migrated database in milliseconds. Nothing may stay connected
    to it, or cloning fails.
    """
    admin_url = pg_server.url()
    drop_database(admin_url, TEMPLATE_DATABASE)
    create_database(admin_url, TEMPLATE_DATABASE)
    yield TEMPLATE_DATABASE
    drop_database(admin_url, TEMPLATE_DATABASE)


@pytest.fixture
def database_url(pg_server: PostgresEndpoint, template_database: str) -> Iterator[str]:
    """URL of a fresh database cloned from the template for this test, dropped after it."""
    with cloned(pg_server, template_database, "belltower_test") as url:
        yield url


@contextlib.contextmanager
def cloned(pg_server: PostgresEndpoint, template: str, prefix: str) -> Iterator[str]:
    """URL of a new database cloned from ``template`` (named ``prefix_<random>``), dropped after."""
    admin_url = pg_server.url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create_database(admin_url, name, template=template)
    try:
        yield pg_server.url(name)
    finally:
        drop_database(admin_url, name)


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    """A real SMTP server on a free port; received mail is in ``messages`` and ``tmp_path/mail``."""
    with MailSink(maildir=tmp_path / "mail") as sink:
        yield sink


@pytest.fixture
def tmp_batch_folder(tmp_path: Path) -> Path:
    """An empty folder for exports and file drops (``BELLTOWER_BATCH_FOLDER``)."""
    folder = tmp_path / "batch"
    folder.mkdir()
    return folder


SIS_TEMPLATE_DATABASE = "belltower_sis_template"


@pytest.fixture(scope="session")
def sis_today() -> date:
    """The day the demo school is laid out around (today, UTC), fixed for the session."""
    return datetime.now(UTC).date()


@pytest.fixture(scope="session")
def sis_template_database(pg_server: PostgresEndpoint, sis_today: date) -> Iterator[str]:
    """A template with the scheduler, history, notifier and ``sis`` schemas and the demo school.

    Built once per session (a few seconds); ``sis_database`` clones it for each test.
    """
    import asyncio

    import asyncpg

    from belltower import sis
    from belltower.db import migrate
    from belltower_dev import demo

    admin_url = pg_server.url()
    drop_database(admin_url, SIS_TEMPLATE_DATABASE)
    create_database(admin_url, SIS_TEMPLATE_DATABASE)

    async def build() -> None:
        pool = await asyncpg.create_pool(
            pg_server.url(SIS_TEMPLATE_DATABASE), min_size=1, max_size=1
        )
        try:
            await migrate(pool, "scheduler", "belltower_scheduler")
            await migrate(pool, "history", "belltower_history")
            await sis.migrate(pool)
            await migrate(pool, "notifier", "belltower_notifier")
            data = demo.generate(sis_today)
            async with pool.acquire() as conn:
                await demo.load(conn, data)
        finally:
            await pool.close()

    asyncio.run(build())
    yield SIS_TEMPLATE_DATABASE
    drop_database(admin_url, SIS_TEMPLATE_DATABASE)


@pytest.fixture
def sis_database(pg_server: PostgresEndpoint, sis_template_database: str) -> Iterator[str]:
    """URL of a fresh database holding the demo school (and every service's schema), dropped after."""
    with cloned(pg_server, sis_template_database, "belltower_sis") as url:
        yield url


TIERS = ("unit", "integration", "catalog", "e2e", "helm")
"""The suite's tiers, one folder each; ``pytest -m unit`` (``make test-unit``) runs the fast one."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, from the folder it lives in."""
    root = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(root).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
