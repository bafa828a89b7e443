"""A PostgreSQL restart while jobs run loses no occurrence and records no run twice.

The services use a private PostgreSQL server here, so it can be SIGKILLed and restarted
without disturbing the databases of other tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from belltower_dev.localservers import PostgresServer, create_database
from tests.helpers.faults import assert_every_second_once, query, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def private_pg() -> Iterator[PostgresServer]:
    # Durable commits: with synchronous_commit off, a SIGKILL loses the last commits, and
    # the test would see the database, not Belltower, forget an occurrence.
    with PostgresServer(fsync=True) as server:
        yield server


@pytest.fixture
def database_url(private_pg: PostgresServer) -> str:
    return create_database(private_pg.url(), "belltower")


def test_a_database_restart_loses_and_repeats_nothing(stack, cli, database_url, private_pg) -> None:
    job = cli.json(
        "jobs",
        "create",
        "--type",
        "system.canary",
        "--title",
        "Through a DB restart",
        "--every",
        "1s",
    )
    time.sleep(3.0)
    private_pg.kill()
    time.sleep(3.0)
    private_pg.restart()
    time.sleep(6.0)
    wait_until(
        lambda: cli.run("jobs", "pause", job["id"], check=False).returncode == 0,
        30,
        "the job to pause",
    )
    wait_until(
        lambda: (
            not query(database_url, "SELECT 1 FROM scheduler.occurrences WHERE state = 'pending'")
        ),
        30,
        "pending occurrences to be published",
    )
    ledger = assert_every_second_once(database_url, job["id"])
    assert len(ledger) >= 10
