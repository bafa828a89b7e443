"""The fault matrix: each case breaks one part of a running system and counts what became of
every occurrence (``fault-matrix <case>: ... lost, ... duplicated`` on stdout; ``make chaos``
runs the heavy cases at full size and prints those lines).

Real processes throughout: a private nats-server, PostgreSQL, and the services started from
their console scripts (``tests/e2e/conftest.py``). The broker-loss cases (a purged or
recreated due stream, runs abandoned by their worker) live with the reconciler's tests; the
scheduler's failover under SIGSTOP is in ``test_failover.py``, which prints its figures too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from belltower.api import RunPolicy
from belltower.subjects import DUE_STREAM, worker_consumer
from tests.helpers.faults import assert_every_second_once, query, wait_until
from tests.helpers.matrix import (
    every_second,
    finished_runs,
    insert_canaries,
    pending,
    size,
    stop_and_settle,
    tally,
)

pytestmark = pytest.mark.slow


def on_nats(url: str, action: Callable[[JetStreamContext], Awaitable[Any]]) -> Any:
    """Run ``action`` with a JetStream context of its own, as an operator's tool would."""

    async def go() -> Any:
        nc = await nats.connect(url)
        try:
            return await action(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def consumer_exists(url: str, name: str) -> bool:
    async def look(js: JetStreamContext) -> bool:
        try:
            await js.consumer_info(DUE_STREAM, name)
        except NotFoundError:
            return False
        return True

    return on_nats(url, look)


def log_events(text: str, action: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("action") == action:
            out.append(event)
    return out


def test_a_deleted_worker_consumer_is_recreated_and_nothing_is_lost(
    stack, cli, database_url, fresh_nats
) -> None:
    job_id = every_second(cli, "Through a consumer deletion")
    time.sleep(3.0)
    name = worker_consumer("notifier")
    on_nats(fresh_nats.url, lambda js: js.delete_consumer(DUE_STREAM, name))
    deleted_at = time.monotonic()
    wait_until(lambda: consumer_exists(fresh_nats.url, name), 30, "the consumer to be recreated")
    recreated_s = time.monotonic() - deleted_at
    assert log_events(stack.log("notifier-worker"), "consumer.recreated")
    time.sleep(3.0)  # runs resume on the new consumer
    stop_and_settle(cli, database_url, [job_id])
    result = tally(
        "consumer-deleted", database_url, fresh_nats.url, [job_id],
        extra=f"consumer recreated after {recreated_s:.1f} s",
    )  # fmt: skip
    assert result.occurrences >= 8
    result.assert_each_ran_once()


DUE_MAX_BYTES = 4_096
"""Room for about five due messages: a stream an operator capped, or a server out of storage."""


def test_a_full_due_stream_holds_occurrences_pending_until_space_returns(
    stack, cli, database_url, fresh_nats
) -> None:
    stack.stop("notifier-worker")  # nothing drains the stream: it fills

    async def cap(js: JetStreamContext) -> None:
        config = (await js.stream_info(DUE_STREAM)).config
        await js.update_stream(dataclasses.replace(config, max_bytes=DUE_MAX_BYTES))

    on_nats(fresh_nats.url, cap)
    job_id = every_second(cli, "Into a full stream")

    def refused() -> int:
        events = log_events(stack.log("scheduler"), "dispatch.unconfirmed")
        return sum(e.get("refused") or 0 for e in events)

    wait_until(lambda: refused() > 0 and pending(database_url) >= 8, 60, "publishes refused")
    held = pending(database_url)
    in_stream = on_nats(fresh_nats.url, lambda js: js.stream_info(DUE_STREAM)).state.messages
    assert stack.procs["scheduler"].poll() is None, "the scheduler survives a full stream"
    stack.start("notifier-worker")  # space returns as the worker drains the stream
    wait_until(lambda: pending(database_url) < 2, 90, "the held occurrences to go out")
    stop_and_settle(cli, database_url, [job_id])
    result = tally(
        "storage-full", database_url, fresh_nats.url, [job_id],
        extra=f"{held} held pending while the stream (max_bytes {DUE_MAX_BYTES}) kept "
        f"{in_stream}; {refused()} publishes refused",
    )  # fmt: skip
    result.assert_each_ran_once()


GRACE_S = 5
"""The clock test's misfire grace: occurrences later than this when found are the catch-up
policy's (latest: coalesced into the latest), those within it run."""


def scheduler_answers(cli) -> bool:
    return cli.run("jobs", "list", check=False).returncode == 0


def test_a_wall_clock_jump_gives_no_burst_and_no_gap_beyond_the_catch_up_policy(
    stack, cli, database_url, fresh_nats, tmp_path
) -> None:
    offset = tmp_path / "clock-offset"
    stack.stop("scheduler")  # a clean stop gives the lease back at once
    stack.start(
        "scheduler",
        BELLTOWER_SCHEDULER_CLOCK_OFFSET_FILE=str(offset),
        BELLTOWER_MISFIRE_GRACE_S=str(GRACE_S),
    )
    wait_until(lambda: scheduler_answers(cli), 60, "the scheduler to answer")
    job_id = every_second(cli, "Through clock jumps")
    time.sleep(3.0)
    jumped_at = time.time()
    offset.write_text("3600")  # the host's clock steps an hour forward
    time.sleep(4.0)
    offset.write_text("0")  # and an hour back
    back_s = 4.0
    time.sleep(back_s)
    offset.write_text("3600")  # corrected again
    time.sleep(4.0)
    stop_and_settle(cli, database_url, [job_id])

    ledger = assert_every_second_once(database_url, job_id)  # no gap, none twice
    hour = [r for r in ledger if jumped_at <= r["scheduled_for"].timestamp() < jumped_at + 3600 - 1]
    ran = [r for r in hour if r["state"] == "dispatched"]
    coalesced = [r for r in hour if r["state"] == "coalesced"]
    assert len(ran) <= GRACE_S + 2, f"{len(ran)} runs at once after the jump: a burst"
    assert len(coalesced) >= 3600 - GRACE_S - 10
    result = tally(
        "clock-jump", database_url, fresh_nats.url, [job_id],
        extra=f"+1 h: {len(coalesced)} coalesced (catch-up latest), {len(ran)} run at once "
        f"(misfire grace {GRACE_S} s); -1 h for {back_s:g} s then corrected: nothing repeated",
    )  # fmt: skip
    assert (result.lost, result.duplicated) == (0, 0)


KILL_EVERY_S = 5.0


def test_runs_with_a_worker_sigkilled_every_5_s_are_each_recorded_exactly_once(
    stack, cli, database_url, fresh_nats
) -> None:
    """2,000 canary runs due at once (10,000 under ``make chaos``), each half a second long,
    while the notifier-worker is SIGKILLed 5 s after each start and started again: redelivery
    and the claims bucket must give every occurrence exactly one recorded, succeeded run."""
    n = size(2_000, 10_000)
    stack.stop("scheduler")  # a scheduler loads its jobs when it starts
    due = datetime.now(UTC) + timedelta(seconds=2)
    # Enough deliveries that the kills themselves never dead-letter a run: a message in the
    # hands of a killed worker counts a delivery, and the default allows three.
    policy = RunPolicy(overlap="allow", max_deliveries=100)
    jobs = insert_canaries(database_url, n, due, {"sleep_s": 0.5}, policy)
    stack.start("scheduler")
    kills = 0
    deadline = time.monotonic() + max(240.0, n / 10)

    def starts() -> int:
        return len(log_events(stack.log("notifier-worker"), "worker.ready"))

    while finished_runs(database_url, jobs) < n:
        assert time.monotonic() < deadline, f"{finished_runs(database_url, jobs)} of {n} recorded"
        # 5 s of work after each start (a start on a loaded machine takes seconds itself).
        wait_until(lambda k=kills: starts() > k, 60, "the worker to start", interval=0.1)
        time.sleep(KILL_EVERY_S)
        if finished_runs(database_url, jobs) >= n:
            break
        stack.kill("notifier-worker")
        kills += 1
        stack.start("notifier-worker")
    statuses = query(
        database_url,
        "SELECT status, count(*) AS n FROM history.runs WHERE job_id = ANY($1) GROUP BY status",
        [uuid.UUID(j) for j in jobs],
    )
    attempts = query(
        database_url,
        "SELECT max(attempt) AS most, count(*) FILTER (WHERE attempt > 1) AS again"
        " FROM history.runs WHERE job_id = ANY($1)",
        [uuid.UUID(j) for j in jobs],
    )[0]
    result = tally(
        "worker-killed", database_url, fresh_nats.url, jobs,
        extra=f"{kills} SIGKILLs, one every {KILL_EVERY_S:g} s; {attempts['again']} runs "
        f"delivered again (most attempts {attempts['most']}); "
        + ", ".join(f"{r['status']} {r['n']}" for r in statuses),
    )  # fmt: skip
    assert kills >= 1, "the runs finished before the first kill: nothing was tested"
    assert result.occurrences == result.dispatched == result.recorded == n
    assert (result.lost, result.duplicated) == (0, 0)
    assert {r["status"] for r in statuses} == {"succeeded"}
