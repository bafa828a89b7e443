"""Crashes and outages lose no run and duplicate none.

The scheduler is SIGKILLed and restarted, a worker is SIGKILLed in the middle of a run, and the
NATS server itself is killed and restarted, all while a job runs every second. Afterwards the
ledger must hold every second exactly once, and history one finished run per dispatched
occurrence.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import msgspec
import nats
import pytest

from belltower.events import RunFinished
from belltower.subjects import RUNS_STREAM
from tests.helpers.faults import assert_every_second_once, query, wait_until
from tests.helpers.metrics import scrape, value
from tests.support import stream_messages

pytestmark = pytest.mark.slow


def test_scheduler_killed_and_restarted_neither_repeats_nor_loses(stack, cli, database_url) -> None:
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", "Every second", "--every", "1s"
    )
    time.sleep(3.5)
    stack.kill("scheduler")
    down_from = time.time()
    time.sleep(3.0)
    stack.start("scheduler")
    wait_until(
        lambda: cli.run("jobs", "list", check=False).returncode == 0, 30, "the scheduler to answer"
    )
    # The dead process's lease has to expire before the new one dispatches (lease.py).
    wait_until(
        lambda: stack.log("scheduler").count("lease.acquired") >= 2,
        30,
        "the restarted scheduler to take the lease over",
    )
    time.sleep(3.0)
    cli.run("jobs", "pause", job["id"])
    ledger = assert_every_second_once(database_url, job["id"])
    during = [r for r in ledger if down_from < r["scheduled_for"].timestamp() < down_from + 2.5]
    assert during and all(r["state"] == "dispatched" for r in during), (
        "occurrences due while it was down were not caught up"
    )


def test_a_worker_killed_mid_run_leads_to_exactly_one_completion(
    stack, cli, database_url, fresh_nats
) -> None:
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", "Long run", "--every", "1d",
        "--param", "sleep_s=6", "--param", "steps=6",
    )  # fmt: skip
    started = cli.json("jobs", "run-now", job["id"])
    run_id = started["run_id"]

    def running() -> bool:
        result = cli.run("runs", "show", run_id, "--json", check=False)
        return result.returncode == 0 and (json.loads(result.stdout).get("progress_done") or 0) >= 1

    wait_until(running, 30, "the run to start and report progress")
    stack.kill("notifier-worker")
    stack.start("notifier-worker")

    def finished() -> bool:
        result = cli.run("runs", "show", run_id, "--json", check=False)
        return result.returncode == 0 and json.loads(result.stdout)["finished_at"] is not None

    wait_until(finished, 90, "the run to finish on the new worker")
    run = cli.json("runs", "show", run_id)
    assert run["status"] == "succeeded"
    assert run["attempt"] >= 2, "the run should have been delivered again after the crash"
    metrics = scrape(stack.health_ports["notifier-worker"])  # the new worker's own counters
    assert (value(metrics, "belltower_consumer_redeliveries_total", pool="notifier") or 0) >= 1
    assert value(metrics, "belltower_runs_total", pool="notifier", job_type="system.canary", status="succeeded") == 1  # fmt: skip
    assert (
        len(query(database_url, "SELECT 1 FROM history.runs WHERE run_id = $1", uuid.UUID(run_id)))
        == 1
    )

    async def finished_events() -> list[RunFinished]:
        nc = await nats.connect(fresh_nats.url)
        try:
            messages = await stream_messages(nc.jetstream(), RUNS_STREAM, "belltower.run.finished.")
            events = [msgspec.json.decode(m.data, type=RunFinished) for m in messages]
            return [e for e in events if e.data.run_id == run_id]
        finally:
            await nc.close()

    time.sleep(4)  # past the next ack-wait: a late second completion would show by now
    assert len(asyncio.run(finished_events())) == 1


def test_a_nats_restart_loses_and_repeats_nothing(stack, cli, database_url, fresh_nats) -> None:
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", "Through an outage", "--every", "1s"
    )
    time.sleep(3.0)
    fresh_nats.kill()
    time.sleep(3.0)
    fresh_nats.restart()
    wait_until(
        lambda: cli.run("jobs", "list", check=False).returncode == 0,
        60,
        "the scheduler to answer again",
    )
    time.sleep(6.0)
    cli.run("jobs", "pause", job["id"])
    wait_until(
        lambda: (
            not query(database_url, "SELECT 1 FROM scheduler.occurrences WHERE state = 'pending'")
        ),
        30,
        "pending occurrences to be published after the outage",
    )
    assert_every_second_once(database_url, job["id"])
