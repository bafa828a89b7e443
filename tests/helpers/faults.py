"""Fault-test helpers: SQL from a test, waiting for a condition, and the once-a-second check."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg


def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def wait_until(predicate, timeout: float, what: str, interval: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def assert_every_second_once(database_url: str, job_id: str) -> list[asyncpg.Record]:
    """Ledger: consecutive seconds, each once, none left pending; history: one finished run each."""
    ledger = query(
        database_url,
        "SELECT id::text AS id, scheduled_for, state, cause FROM scheduler.occurrences WHERE job_id = $1 ORDER BY scheduled_for",
        uuid.UUID(job_id),
    )
    times = [r["scheduled_for"] for r in ledger]
    assert len(times) == len(set(times))
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a != timedelta(seconds=1)]
    assert not gaps, f"occurrences missing from the ledger between {gaps}"
    # Skipped is a recorded outcome too: the overlap policy (skip) when a run's finished event
    # was held up by the fault, and the pause that ends each test when an occurrence fell due
    # just before it (only the last ones can be that); nothing else may skip an occurrence here.
    outcomes = {(r["state"], r["cause"]) for r in ledger}
    assert outcomes <= {
        ("dispatched", None),
        ("coalesced", "catch_up"),
        ("skipped", "overlap"),
        ("skipped", "paused"),
    }, outcomes
    paused = [i for i, r in enumerate(ledger) if r["cause"] == "paused"]
    assert paused == list(range(len(ledger) - len(paused), len(ledger))), (
        f"skipped as paused before the pause: {paused}"
    )
    dispatched = {r["id"] for r in ledger if r["state"] == "dispatched"}

    def recorded() -> bool:
        n = query(
            database_url,
            "SELECT count(*) AS n FROM history.runs WHERE job_id = $1 AND finished_at IS NOT NULL",
            uuid.UUID(job_id),
        )[0]["n"]
        return n >= len(dispatched)

    wait_until(recorded, 30, "every dispatched occurrence to be recorded")
    runs = query(
        database_url,
        "SELECT occurrence_id::text AS occ, status FROM history.runs WHERE job_id = $1",
        uuid.UUID(job_id),
    )
    assert sorted(r["occ"] for r in runs) == sorted(dispatched), "history and ledger disagree"
    assert {r["status"] for r in runs} == {"succeeded"}
    return ledger
