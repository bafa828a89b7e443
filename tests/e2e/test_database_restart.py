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
from tests.helpers.matrix import every_second, size, stop_and_settle, tally

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


DOWN_S = 30.0


def test_a_database_down_for_30_s_under_load_loses_and_repeats_nothing(
    stack, cli, database_url, private_pg, fresh_nats
) -> None:
    """The fault matrix's database case: PostgreSQL SIGKILLed and kept down for 30 s while
    several jobs fall due every second; the scheduler cannot write its ledger, history cannot
    record, and afterwards every second of every job is there once, each run recorded once
    (those due meanwhile run late, within the misfire grace)."""
    jobs = [every_second(cli, f"Through a database outage {i}") for i in range(size(4, 25))]
    time.sleep(3.0)
    private_pg.kill()
    time.sleep(DOWN_S)
    private_pg.restart()
    wait_until(
        lambda: cli.run("jobs", "list", check=False).returncode == 0, 60, "the scheduler to answer"
    )
    time.sleep(4.0)
    stop_and_settle(cli, database_url, jobs)
    for job_id in jobs:
        assert_every_second_once(database_url, job_id)
    result = tally(
        "database-down", database_url, fresh_nats.url, jobs,
        extra=f"PostgreSQL down {DOWN_S:g} s, {len(jobs)} jobs due every second",
    )  # fmt: skip
    assert result.dispatched >= len(jobs) * (DOWN_S + 5)
    result.assert_each_ran_once(jobs=len(jobs))
