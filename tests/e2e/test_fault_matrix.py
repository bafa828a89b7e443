"""The fault matrix: each case breaks one part of a running system and counts what became of
every occurrence (``fault-matrix <case>: ... lost, ... duplicated`` on stdout; ``make chaos``
runs the heavy cases at full size and prints those lines).

Real processes throughout: a private nats-server, PostgreSQL, and the four services started
from their console scripts, once for the module (each start costs tens of seconds on a loaded
machine); every case counts only its own jobs and puts back what it broke. The scheduler runs
with the test-only clock seam (``BELLTOWER_SCHEDULER_CLOCK_OFFSET_FILE``, offset 0 but in the
clock case). PostgreSQL down for 30 s is in ``test_database_restart.py`` (it needs a private
server), the scheduler leader paused past its lease in ``test_failover.py``; both print the same
figures. The broker-loss cases (a purged or recreated due stream, runs abandoned by their worker)
are ``test_reconciler.py``'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from belltower.api import RunPolicy
from belltower.subjects import DUE_STREAM, HISTORY_CONSUMER, RUNS_STREAM, worker_consumer
from belltower_dev.localservers import MailSink, NatsServer, create_database, drop_database
from tests.e2e.conftest import SERVICES, Cli, Stack
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

GRACE_S = 10
"""The module scheduler's misfire grace: an occurrence later than this when found is the
catch-up policy's (latest: coalesced into the latest), one within it runs."""


@dataclass
class Matrix:
    """One running system for the module's cases."""

    stack: Stack
    cli: Cli
    database_url: str
    nats: NatsServer
    clock_offset: Path
    """The scheduler's clock seam: seconds written here move its now."""

    def start_scheduler(self) -> None:
        self.stack.start(
            "scheduler",
            BELLTOWER_SCHEDULER_CLOCK_OFFSET_FILE=str(self.clock_offset),
            BELLTOWER_MISFIRE_GRACE_S=str(GRACE_S),
        )

    def restart_scheduler(self) -> None:
        """A clean stop gives the lease back at once, so the new process dispatches at once."""
        self.stack.stop("scheduler")
        self.start_scheduler()
        # `job-types` is the cheapest call that needs the scheduler to answer.
        wait_until(
            lambda: self.cli.run("job-types", check=False).returncode == 0,
            90,
            "the scheduler to answer",
        )


@pytest.fixture(scope="module")
def matrix(
    pg_server, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    """The environment ``stack_env`` (conftest) gives, for a module-long stack."""
    tmp = tmp_path_factory.mktemp("fault-matrix")
    for folder in ("logs", "batch"):
        (tmp / folder).mkdir()
    admin_url = pg_server.url()
    name = f"belltower_matrix_{uuid.uuid4().hex[:12]}"
    create_database(admin_url, name, template=template_database)
    try:
        with NatsServer() as server, MailSink(maildir=tmp / "mail") as mail:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
            env.update(
                BELLTOWER_NATS_URL=server.url,
                BELLTOWER_DATABASE_URL=pg_server.url(name),
                BELLTOWER_BATCH_FOLDER=str(tmp / "batch"),
                BELLTOWER_SMTP_HOST=mail.host,
                BELLTOWER_SMTP_PORT=str(mail.port),
                BELLTOWER_ACK_WAIT_S="3",
                BELLTOWER_LOG_JSON="true",
                BELLTOWER_LOG_LEVEL="INFO",
                OTEL_TRACES_EXPORTER="none",
            )
            cli = Cli(env)
            stack = Stack(env, tmp / "logs")
            m = Matrix(stack, cli, pg_server.url(name), server, tmp / "clock-offset")
            try:
                for service in SERVICES:
                    if service == "scheduler":
                        m.start_scheduler()
                    else:
                        stack.start(service)
                stack.wait_ready(cli)
                yield m
            finally:
                stack.stop_all()
    finally:
        drop_database(admin_url, name)


def on_nats(url: str, action: Callable[[JetStreamContext], Awaitable[Any]]) -> Any:
    """Run ``action`` with a JetStream context of its own, as an operator's tool would."""

    async def go() -> Any:
        nc = await nats.connect(url)
        try:
            return await action(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def consumer_exists(url: str, name: str, stream: str = DUE_STREAM) -> bool:
    async def look(js: JetStreamContext) -> bool:
        try:
            await js.consumer_info(stream, name)
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


def test_a_deleted_worker_consumer_is_recreated_and_nothing_is_lost(matrix: Matrix) -> None:
    stack, cli, database_url, fresh_nats = (
        matrix.stack,
        matrix.cli,
        matrix.database_url,
        matrix.nats,
    )
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


def test_a_deleted_history_consumer_is_recreated_and_nothing_is_lost(matrix: Matrix) -> None:
    """History's push consumer, deleted: created again from the stream's start (its ack floor
    is gone), so the events it missed arrive and those it had are stored once, not twice."""
    stack, cli, database_url, fresh_nats = (
        matrix.stack,
        matrix.cli,
        matrix.database_url,
        matrix.nats,
    )
    job_id = every_second(cli, "Through a history consumer deletion")
    time.sleep(3.0)
    on_nats(fresh_nats.url, lambda js: js.delete_consumer(RUNS_STREAM, HISTORY_CONSUMER))
    deleted_at = time.monotonic()
    wait_until(
        lambda: consumer_exists(fresh_nats.url, HISTORY_CONSUMER, RUNS_STREAM),
        30,
        "history's consumer to be recreated",
    )
    recreated_s = time.monotonic() - deleted_at
    assert log_events(stack.log("history"), "consumer.recreated")
    time.sleep(3.0)  # runs go on while history catches up from the stream
    stop_and_settle(cli, database_url, [job_id])
    result = tally(
        "history-consumer-deleted", database_url, fresh_nats.url, [job_id],
        extra=f"consumer recreated after {recreated_s:.1f} s",
    )  # fmt: skip
    assert result.occurrences >= 8
    result.assert_each_ran_once()


DUE_MAX_BYTES = 4_096
"""Room for about five due messages: a stream an operator capped, or a server out of storage."""


def cap_due_stream(url: str, max_bytes: int) -> None:
    async def cap(js: JetStreamContext) -> None:
        config = (await js.stream_info(DUE_STREAM)).config
        await js.update_stream(dataclasses.replace(config, max_bytes=max_bytes))

    on_nats(url, cap)


def test_a_full_due_stream_holds_occurrences_pending_until_space_returns(matrix: Matrix) -> None:
    stack, cli, database_url, fresh_nats = (
        matrix.stack,
        matrix.cli,
        matrix.database_url,
        matrix.nats,
    )
    stack.stop("notifier-worker")  # nothing drains the stream: it fills
    cap_due_stream(fresh_nats.url, DUE_MAX_BYTES)
    try:
        job_id = every_second(cli, "Into a full stream")
        held, in_stream, refusals = _fill_and_drain(matrix)
    finally:
        cap_due_stream(fresh_nats.url, -1)
        if stack.procs["notifier-worker"].poll() is not None:
            stack.start("notifier-worker")
    stop_and_settle(cli, database_url, [job_id])
    result = tally(
        "storage-full", database_url, fresh_nats.url, [job_id],
        extra=f"{held} held pending while the stream (max_bytes {DUE_MAX_BYTES}) kept "
        f"{in_stream}; {refusals} publishes refused",
    )  # fmt: skip
    result.assert_each_ran_once()


def _fill_and_drain(matrix: Matrix) -> tuple[int, int, int]:
    """Until publishes are refused and occurrences wait in the ledger; then the worker drains
    the stream (the cap stays) and they go out. Returns (held pending, kept, refusals)."""
    stack, database_url, fresh_nats = matrix.stack, matrix.database_url, matrix.nats
    logged_before = len(stack.log("scheduler"))

    def refused() -> int:
        events = log_events(stack.log("scheduler")[logged_before:], "dispatch.unconfirmed")
        return sum(e.get("refused") or 0 for e in events)

    wait_until(lambda: refused() > 0 and pending(database_url) >= 8, 60, "publishes refused")
    held = pending(database_url)
    in_stream = on_nats(fresh_nats.url, lambda js: js.stream_info(DUE_STREAM)).state.messages
    assert stack.procs["scheduler"].poll() is None, "the scheduler survives a full stream"
    stack.start("notifier-worker")  # space returns as the worker drains the stream
    wait_until(lambda: pending(database_url) < 2, 90, "the held occurrences to go out")
    return held, in_stream, refused()


def test_a_wall_clock_jump_gives_no_burst_and_no_gap_beyond_the_catch_up_policy(
    matrix: Matrix,
) -> None:
    cli, database_url, offset = matrix.cli, matrix.database_url, matrix.clock_offset
    job_id = every_second(cli, "Through clock jumps")
    time.sleep(3.0)
    jumped_at = time.time()
    back_s = 4.0
    try:
        offset.write_text("3600")  # the host's clock steps an hour forward
        time.sleep(4.0)
        offset.write_text("0")  # and an hour back
        time.sleep(back_s)
        offset.write_text("3600")  # corrected again
        time.sleep(4.0)
        stop_and_settle(cli, database_url, [job_id])
    finally:
        offset.write_text("0")  # the next case's jobs start from the real now

    ledger = assert_every_second_once(database_url, job_id)  # no gap, none twice
    hour = [r for r in ledger if jumped_at <= r["scheduled_for"].timestamp() < jumped_at + 3600 - 1]
    ran = [r for r in hour if r["state"] == "dispatched"]
    coalesced = [r for r in hour if r["state"] == "coalesced"]
    assert len(ran) <= GRACE_S + 2, f"{len(ran)} runs at once after the jump: a burst"
    assert len(coalesced) >= 3600 - GRACE_S - 10
    result = tally(
        "clock-jump", database_url, matrix.nats.url, [job_id],
        extra=f"+1 h: {len(coalesced)} coalesced (catch-up latest), {len(ran)} run at once "
        f"(misfire grace {GRACE_S} s); -1 h for {back_s:g} s then corrected: nothing repeated",
    )  # fmt: skip
    assert (result.lost, result.duplicated) == (0, 0)


KILL_EVERY_S = 5.0


def test_runs_with_a_worker_sigkilled_every_5_s_are_each_recorded_exactly_once(
    matrix: Matrix,
) -> None:
    """2,000 canary runs due at once (10,000 under ``make chaos``), each half a second long,
    while the notifier-worker is SIGKILLed 5 s after each start and started again: redelivery
    and the claims bucket must give every occurrence exactly one recorded, succeeded run."""
    stack, database_url, fresh_nats = matrix.stack, matrix.database_url, matrix.nats
    n = size(2_000, 10_000)
    due = datetime.now(UTC) + timedelta(seconds=2)
    # Enough deliveries that the kills themselves never dead-letter a run: a message in the
    # hands of a killed worker counts a delivery, and the default allows three.
    policy = RunPolicy(overlap="allow", max_deliveries=100)
    jobs = insert_canaries(database_url, n, due, {"sleep_s": 0.5}, policy)
    matrix.restart_scheduler()  # a scheduler loads the jobs table when it starts
    kills = 0
    deadline = time.monotonic() + max(240.0, n / 10)

    def starts() -> int:
        return len(log_events(stack.log("notifier-worker"), "worker.ready"))

    started_before = starts()  # the running worker's start among them

    while finished_runs(database_url, jobs) < n:
        assert time.monotonic() < deadline, f"{finished_runs(database_url, jobs)} of {n} recorded"
        # 5 s of work after each start (a start on a loaded machine takes seconds itself).
        wait_until(
            lambda k=kills: starts() >= started_before + k, 60, "the worker to start", interval=0.1
        )
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
