"""Two scheduler replicas: the standby takes over a dead or stalled leader, nothing runs twice.

Each test runs two ``belltower-scheduler`` processes, a notifier-worker and history against
real NATS and PostgreSQL, with a canary due every second. The leader is SIGKILLed (a crash) or
SIGSTOPped past its lease and then let go (a long pause); afterwards the ledger holds every
second once, history one finished run per dispatched occurrence, and every due message says,
in its lease-token header, which leader published it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import msgspec
import nats
import pytest

from belltower.events import DueOccurrence
from belltower_dev.localservers import free_port
from belltower_scheduler.fencing import FENCE_HEADER
from tests.e2e.conftest import Cli, Stack
from tests.helpers.faults import assert_every_second_once, wait_until
from tests.helpers.matrix import tally

pytestmark = pytest.mark.slow

LEASE_S = 4.0
TAKEOVER_TARGET_S = 10.0


def start_scheduler(stack: Stack, replica: str) -> None:
    """A scheduler replica named ``replica``, its log in ``scheduler-<replica>.log``."""
    stack.start(
        "scheduler",
        BELLTOWER_SCHEDULER_REPLICA_ID=replica,
        BELLTOWER_SCHEDULER_LEASE_S=str(LEASE_S),
        # Each replica serves its own health and metrics port.
        BELLTOWER_HEALTH_PORT=str(free_port()),
    )
    stack.procs[f"scheduler-{replica}"] = stack.procs.pop("scheduler")


def log_events(stack: Stack, action: str) -> list[dict]:
    """The JSON log lines of every process in the stack's shared scheduler log with ``action``."""
    out = []
    for line in stack.log("scheduler").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("action") == action:
            out.append(event)
    return out


def token_of(stack: Stack, replica: str) -> int:
    [acquired] = [e for e in log_events(stack, "lease.acquired") if e["replica"] == replica]
    return int(acquired["token"])


class DueTap:
    """Every due message as published, read by a plain NATS subscriber in a thread.

    The stream is a work queue (acked messages leave it), and JetStream drops a duplicate
    publish silently, so only a subscriber sees each publish, duplicates included, with the
    lease token of the leader that made it.
    """

    def __init__(self, nats_url: str) -> None:
        self.url = nats_url
        self.seen: list[tuple[int, DueOccurrence]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        nc = await nats.connect(self.url)

        async def record(msg) -> None:
            token = int(msg.headers[FENCE_HEADER])
            self.seen.append((token, msgspec.json.decode(msg.data, type=DueOccurrence)))

        await nc.subscribe("belltower.due.>", cb=record)
        await nc.flush()
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        await nc.drain()

    def __enter__(self) -> DueTap:
        self._thread.start()
        assert self._ready.wait(10), "could not subscribe to due messages"
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def by_token(self) -> dict[int, list[DueOccurrence]]:
        out: dict[int, list[DueOccurrence]] = {}
        for token, message in self.seen:
            out.setdefault(token, []).append(message)
        return out


@pytest.fixture
def ha_stack(stack_env: dict[str, str], tmp_path: Path, cli: Cli):
    """History, a notifier-worker and scheduler ``a`` (the leader, alone when it starts), then
    scheduler ``b`` as a standby once it has said so."""
    logs = tmp_path / "logs"
    logs.mkdir()
    s = Stack(stack_env, logs)
    try:
        s.start("history")
        s.start("notifier-worker")
        start_scheduler(s, "a")
        s.wait_ready(cli, job_types=1)
        start_scheduler(s, "b")
        wait_until(
            lambda: any(e.get("replica") == "b" for e in log_events(s, "scheduler.ready")),
            30,
            "the standby to start",
        )
        assert [e["replica"] for e in log_events(s, "lease.acquired")] == ["a"]
        yield s
    finally:
        s.stop_all()


def test_a_killed_leader_is_replaced_within_the_lease_time(
    ha_stack: Stack, cli: Cli, database_url: str, fresh_nats
) -> None:
    with DueTap(fresh_nats.url) as tap:
        job = cli.json("jobs", "create", "--type", "system.canary", "--title", "Every second", "--every", "1s")  # fmt: skip
        time.sleep(3.0)
        ha_stack.kill("scheduler-a")
        killed_at = time.time()
        wait_until(lambda: len(log_events(ha_stack, "lease.acquired")) == 2, 20, "the takeover")
        time.sleep(3.0)
        cli.run("jobs", "pause", job["id"])  # answered by the new leader

    ledger = assert_every_second_once(database_url, job["id"])
    by_token = tap.by_token()
    a, b = token_of(ha_stack, "a"), token_of(ha_stack, "b")
    assert b > a and set(by_token) == {a, b}
    first_by_b = min(m.dispatched_at for m in by_token[b]).timestamp()
    takeover_s = first_by_b - killed_at
    print(f"takeover after SIGKILL: {takeover_s:.2f} s (lease {LEASE_S:g} s)")
    assert takeover_s <= TAKEOVER_TARGET_S
    missed_window = [r for r in ledger if killed_at < r["scheduled_for"].timestamp() < first_by_b]
    assert missed_window, "the occurrences due during the takeover should be in the ledger"
    late = {r["scheduled_for"].isoformat(): (r["state"], r.get("cause")) for r in missed_window}
    assert all(state == "dispatched" for state, _ in late.values()), f"run late, not lost: {late}"


def test_a_paused_leader_dispatches_nothing_once_deposed(
    ha_stack: Stack, cli: Cli, database_url: str, fresh_nats
) -> None:
    with DueTap(fresh_nats.url) as tap:
        job = cli.json("jobs", "create", "--type", "system.canary", "--title", "Every second", "--every", "1s")  # fmt: skip
        time.sleep(3.0)
        leader = ha_stack.procs["scheduler-a"]
        leader.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: len(log_events(ha_stack, "lease.acquired")) == 2, 20, "the takeover")
            time.sleep(1.0)
        finally:
            resumed_at = time.time()
            leader.send_signal(signal.SIGCONT)
        wait_until(lambda: log_events(ha_stack, "lease.lost"), 10, "the old leader to notice")
        time.sleep(3.0)  # the old leader's heap is full of due work: it would dispatch it by now
        cli.run("jobs", "pause", job["id"])

    assert_every_second_once(database_url, job["id"])
    by_token = tap.by_token()
    a, b = token_of(ha_stack, "a"), token_of(ha_stack, "b")
    assert [e["replica"] for e in log_events(ha_stack, "lease.lost")] == ["a"]
    assert by_token.get(a) and by_token.get(b)
    after_resume = [
        m.scheduled_for for m in by_token[a] if m.dispatched_at.timestamp() >= resumed_at
    ]
    assert after_resume == [], f"the deposed leader dispatched {after_resume}"
    # Published by both: one the old leader sent but had not marked when it stopped, which the
    # new one sends again from the ledger; JetStream drops the copy, so it still runs once.
    both = {m.occurrence_id for m in by_token[a]} & {m.occurrence_id for m in by_token[b]}
    result = tally(
        "leader-paused", database_url, fresh_nats.url, [job["id"]],
        extra=f"SIGSTOP past the {LEASE_S:g} s lease: token {a} -> {b}, "
        f"{len(after_resume)} published by the old leader after SIGCONT, "
        f"{len(both)} published by both (de-duplicated by id)",
    )  # fmt: skip
    # The job skips behind a run still going (its default overlap policy), which the check above
    # allows; what was dispatched ran once.
    assert (result.lost, result.duplicated) == (0, 0), result.line()
    assert result.recorded == result.dispatched, result.line()
    assert (
        max(m.scheduled_for for m in by_token[b]) > datetime.fromtimestamp(resumed_at).astimezone()
    )
