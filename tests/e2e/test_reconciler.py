"""The reconciler finds what the broker lost (``belltower_scheduler.reconcile``).

Real processes, real NATS and PostgreSQL; the broker's losses are made by hand: the due stream
purged, or deleted and recreated, while occurrences wait in it. Each test prints its figures
(recovered, lost, abandoned, duplicated) and asserts them.

The reconciler's deadlines are shortened for the tests (its settings, below): an occurrence
unstarted 4 s after its dispatch is published again, rounds every half second, three copies at
most, a worker silent for 4 s is looked at.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from typing import Any

import msgspec
import nats
import pytest

from belltower import operations as ops
from belltower import streams
from belltower.api import RunNowRequest
from belltower.events import RunFinished
from belltower.rpc import ApiClient
from belltower.settings import Settings
from belltower.subjects import DUE_STREAM, RUNS_STREAM
from tests.helpers.faults import query, wait_until
from tests.helpers.metrics import scrape, value
from tests.support import stream_messages

pytestmark = pytest.mark.slow

RECONCILE = {
    "BELLTOWER_RECONCILE_INTERVAL_S": "0.5",
    "BELLTOWER_RECONCILE_START_DEADLINE_S": "4",
    "BELLTOWER_RECONCILE_ATTEMPTS": "3",
    "BELLTOWER_RECONCILE_ABANDON_S": "4",
}


@pytest.fixture
def stack_env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**stack_env, **RECONCILE}


def _on_nats(url: str, work: Any) -> Any:
    async def go() -> Any:
        nc = await nats.connect(url)
        try:
            return await work(nc)
        finally:
            await nc.close()

    return asyncio.run(go())


def run_now(url: str, job_id: str, n: int) -> list[str]:
    """``n`` run-now requests of one job (over NATS, as the CLI sends them); the occurrence ids."""

    async def work(nc: nats.NATS) -> list[str]:
        client = ApiClient(nc, 20.0)
        ids = []
        for _ in range(n):
            result = await client.call(ops.JOBS_RUN_NOW, RunNowRequest(id=job_id))
            ids.append(result.occurrence_id)
        return ids

    return _on_nats(url, work)


def purge_due(url: str) -> int:
    """Lose every due message the broker holds, as a purge (or a lost volume) does."""

    async def work(nc: nats.NATS) -> int:
        js = nc.jetstream()
        waiting = (await js.stream_info(DUE_STREAM)).state.messages
        await js.purge_stream(DUE_STREAM)
        return waiting

    return _on_nats(url, work)


def recreate_due(url: str) -> None:
    """Delete the due stream and create it again empty, with the settings the code declares."""

    async def work(nc: nats.NATS) -> None:
        js = nc.jetstream()
        await js.delete_stream(DUE_STREAM)
        config = next(c for c in streams.stream_configs(Settings()) if c.name == DUE_STREAM)
        await js.add_stream(config)

    _on_nats(url, work)


def finished_events(url: str, job_id: str) -> Counter[str]:
    """Finished events in BELLTOWER_RUNS per occurrence of the job: more than one is a repeat."""

    async def work(nc: nats.NATS) -> Counter[str]:
        messages = await stream_messages(nc.jetstream(), RUNS_STREAM, "belltower.run.finished.")
        events = [msgspec.json.decode(m.data, type=RunFinished) for m in messages]
        return Counter(e.data.occurrence_id for e in events if e.data.job_id == job_id)

    return _on_nats(url, work)


def ledger(database_url: str, job_id: str) -> list[Any]:
    return query(
        database_url,
        "SELECT id::text AS id, state, reason, run_status, run_error, recovery_attempts "
        "FROM scheduler.occurrences WHERE job_id = $1",
        uuid.UUID(job_id),
    )


def history_runs(database_url: str, job_id: str) -> list[Any]:
    return query(
        database_url,
        "SELECT occurrence_id::text AS occ, status, error FROM history.runs "
        "WHERE job_id = $1 AND finished_at IS NOT NULL",
        uuid.UUID(job_id),
    )


def figures(stack, fresh_nats, database_url: str, job_id: str, ids: list[str]) -> dict[str, Any]:
    """What became of the occurrences, counted from the ledger, history, the stream, metrics."""
    runs = history_runs(database_url, job_id)
    per_occurrence = Counter(r["occ"] for r in runs)
    events = finished_events(fresh_nats.url, job_id)
    rows = {r["id"]: r for r in ledger(database_url, job_id)}
    samples = scrape(stack.health_ports["scheduler"])
    out = {
        "occurrences": len(ids),
        "recorded_once": sum(1 for i in ids if per_occurrence[i] == 1),
        "succeeded": sum(1 for r in runs if r["status"] == "succeeded"),
        "recovered": int(
            value(samples, "belltower_occurrences_recovered_total", pool="notifier") or 0
        ),
        "lost": int(value(samples, "belltower_occurrences_lost_total", pool="notifier") or 0),
        "abandoned": int(value(samples, "belltower_runs_abandoned_total", pool="notifier") or 0),
        "duplicated": sum(1 for i in ids if per_occurrence[i] > 1 or events[i] > 1),
        "published_again": sum(1 for i in ids if rows[i]["recovery_attempts"] > 0),
    }
    print(f"\nreconciler figures: {out}")
    return out


def _create(cli, title: str, *params: str) -> dict[str, Any]:
    return cli.json(
        "jobs", "create", "--type", "system.canary", "--title", title, "--every", "1d",
        "--overlap", "allow", *params,
    )  # fmt: skip


def _every_one_recorded(database_url: str, job_id: str, n: int) -> bool:
    return len(history_runs(database_url, job_id)) >= n


def _dispatched(database_url: str, job_id: str, n: int) -> bool:
    return sum(1 for r in ledger(database_url, job_id) if r["state"] == "dispatched") >= n


def test_a_purge_of_100_waiting_occurrences_is_recovered_each_recorded_once(
    stack, cli, database_url, fresh_nats
) -> None:
    job = _create(cli, "Purged while the worker was down")
    stack.stop("notifier-worker")
    ids = run_now(fresh_nats.url, job["id"], 100)
    wait_until(lambda: _dispatched(database_url, job["id"], 100), 30, "100 dispatched")
    purged = purge_due(fresh_nats.url)
    assert purged >= 100, f"only {purged} due messages were waiting"
    stack.start("notifier-worker")
    wait_until(lambda: _every_one_recorded(database_url, job["id"], 100), 120, "100 runs recorded")
    got = figures(stack, fresh_nats, database_url, job["id"], ids)
    assert got["recorded_once"] == 100, got
    assert got["succeeded"] == 100, got
    assert got["duplicated"] == 0, got
    assert got["lost"] == 0, got
    assert got["recovered"] == 100 == got["published_again"], got
    assert {r["run_status"] for r in ledger(database_url, job["id"])} == {"succeeded"}


def test_a_due_stream_deleted_and_recreated_is_recovered(
    stack, cli, database_url, fresh_nats
) -> None:
    job = _create(cli, "Stream recreated")
    stack.stop("notifier-worker")
    ids = run_now(fresh_nats.url, job["id"], 20)
    wait_until(lambda: _dispatched(database_url, job["id"], 20), 30, "20 dispatched")
    recreate_due(fresh_nats.url)
    stack.start("notifier-worker")
    wait_until(lambda: _every_one_recorded(database_url, job["id"], 20), 120, "20 runs recorded")
    got = figures(stack, fresh_nats, database_url, job["id"], ids)
    assert got["recorded_once"] == 20 == got["succeeded"], got
    assert got["duplicated"] == 0 and got["lost"] == 0, got
    assert got["recovered"] == 20, got


def test_a_run_whose_worker_died_with_no_delivery_left_ends_abandoned(
    stack, cli, database_url, fresh_nats
) -> None:
    job = _create(cli, "Abandoned", "--param", "sleep_s=120", "--param", "steps=120")
    [occurrence] = run_now(fresh_nats.url, job["id"], 1)
    wait_until(
        lambda: any(r["run_status"] == "running" for r in ledger(database_url, job["id"])),
        30,
        "the run to start",
    )
    stack.kill("notifier-worker")  # it stops heart-beating mid-run...
    purge_due(fresh_nats.url)  # ...and its delivery is gone: no redelivery can take it over
    stack.start("notifier-worker")
    wait_until(
        lambda: [r["status"] for r in history_runs(database_url, job["id"])] == ["abandoned"],
        60,
        "history to record the run abandoned",
    )
    [row] = ledger(database_url, job["id"])
    assert row["state"] == "dispatched" and row["run_status"] == "abandoned", dict(row)
    assert "stopped heart-beating" in row["run_error"], row["run_error"]
    got = figures(stack, fresh_nats, database_url, job["id"], [occurrence])
    assert got["abandoned"] == 1 and got["duplicated"] == 0 and got["lost"] == 0, got
    why = cli.run("jobs", "why", job["id"]).stdout
    assert "abandoned" in why, why


def test_an_occurrence_lost_every_time_it_is_published_ends_lost_with_its_reason(
    stack, cli, database_url, fresh_nats
) -> None:
    job = _create(cli, "Lost for good")
    stack.stop("notifier-worker")
    stop = threading.Event()

    def keep_losing() -> None:  # the broker loses every copy the reconciler publishes
        while not stop.is_set():
            purge_due(fresh_nats.url)
            stop.wait(0.2)

    loser = threading.Thread(target=keep_losing, daemon=True)
    loser.start()
    try:
        [occurrence] = run_now(fresh_nats.url, job["id"], 1)
        wait_until(
            lambda: ledger(database_url, job["id"])[0]["state"] == "lost", 60, "the verdict lost"
        )
    finally:
        stop.set()
        loser.join(5)
    [row] = ledger(database_url, job["id"])
    assert row["recovery_attempts"] == 3, dict(row)
    assert row["run_status"] == "lost" and "the broker lost them" in row["reason"], dict(row)
    stack.start("notifier-worker")
    wait_until(lambda: _every_one_recorded(database_url, job["id"], 1), 60, "history to say lost")
    [run] = history_runs(database_url, job["id"])
    assert run["status"] == "lost" and run["error"] == row["reason"]
    got = figures(stack, fresh_nats, database_url, job["id"], [occurrence])
    assert got["lost"] == 1 and got["recovered"] == 1 and got["succeeded"] == 0, got
    assert got["duplicated"] == 0, got
    why = cli.run("jobs", "why", job["id"]).stdout
    assert "lost: no worker started it" in why, why
