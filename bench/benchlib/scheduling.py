"""Scheduling figures: ``burst_drain_s``, ``lateness_p50_ms``/``lateness_p99_ms`` and ``failover_s``.

- ``burst_drain_s`` and the share dispatched out of priority order: ``n`` jobs of mixed
  priorities all due at the same instant, dispatched by the service's own ``Dispatcher`` loop
  (``run_forever``, as the process runs it) against real PostgreSQL and JetStream; the figure
  is the time from the due instant to the stream time of the last message, and the order is
  read back from the stream itself (by stream sequence) once all of it is there, so reading
  does not compete with the dispatcher for this process's CPU.
- ``lateness_p50_ms`` / ``lateness_p99_ms``: jobs spread so that ``rate`` occurrences fall due
  every second, one every ``1/rate`` s, for ``seconds``; lateness is each message's stream
  time minus its ``scheduled_for``.
- ``failover_s``: two ``belltower-scheduler`` processes on ``n`` jobs, one a canary due every
  second; the leader is SIGKILLed and the figure is the time until the first due message
  published under the standby's lease token.

Each compares with a baseline measured in the same run where one makes sense: the raw
``publish_async`` rate for the burst (the time the same number of messages takes to publish
with no scheduler at all).
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from belltower.db import create_pool
from belltower.events import DueOccurrence, utcnow
from belltower.schedule import Every, Schedule
from belltower.subjects import DUE_STREAM, DUE_SUBJECTS
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.fencing import FENCE_HEADER
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import Store

from .data import due_at_once_rows, insert_jobs, job_row, raw_due_messages
from .figures import Figure, publish_all
from .stack import (
    Servers,
    Service,
    fresh_nats,
    jetstream,
    log,
    migrated_pool,
    service_env,
    services,
    settings_for,
    wait_until,
)

TARGET_BURST_S = 5.0
TARGET_OUT_OF_ORDER = 0.0
TARGET_P50_MS = 10.0
TARGET_P99_MS = 100.0
TARGET_FAILOVER_S = 10.0
PRIORITIES = (0, 100, 250, 500, 500, 500, 750, 900, 1000, 10_000)
"""Mostly the default, some above and below: a district's mix."""

_due_decoder = msgspec.json.Decoder(DueOccurrence)


async def read_stream(js: JetStreamContext, expected: int, timeout: float = 120.0) -> list[Any]:
    """The due stream's messages in stream order, with their metadata (``expected`` of them)."""
    sub = await js.pull_subscribe(
        DUE_SUBJECTS,
        stream=DUE_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=-1,
            inactive_threshold=60.0,
        ),
    )
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(out):,} of {expected:,} due messages")
            try:
                batch = await sub.fetch(1000, timeout=2.0)
            except TimeoutError:
                continue
            for msg in batch:
                out.append(msg)
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return out


async def stream_holds(js: JetStreamContext, expected: int, timeout: float) -> None:
    """Wait until the due stream holds ``expected`` messages, asking the server 20 times a second."""
    deadline = time.monotonic() + timeout
    while (held := (await js.stream_info(DUE_STREAM)).state.messages) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the due stream holds {held:,} of {expected:,} messages")
        await asyncio.sleep(0.05)


def out_of_priority_order(priorities: Sequence[int]) -> int:
    """Messages published after one of lower priority (due at the same instant)."""
    lowest = None
    out = 0
    for p in priorities:
        if lowest is not None and p > lowest:
            out += 1
        lowest = p if lowest is None else min(lowest, p)
    return out


# -- burst ---------------------------------------------------------------------------------------


async def burst(servers: Servers, n: int) -> list[Figure]:
    url = servers.database("bench_burst")
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        scheduler_settings = SchedulerSettings(nats_url=nats_server.url, database_url=url)
        setup_pool = await migrated_pool(url, ("scheduler", "belltower_scheduler"))
        pool = await create_pool(url)
        try:
            async with jetstream(nats_server.url, settings) as (_, js):
                rng = random.Random(3)
                # Time for the inserts and the load, on a busy 2-core machine.
                due = utcnow() + timedelta(seconds=10 + n / 5_000)
                rows = [
                    (*row[:6], rng.choice(PRIORITIES), *row[7:]) for row in due_at_once_rows(n, due)
                ]
                raw = raw_due_messages(rows, due)
                await insert_jobs(setup_pool, rows)
                await setup_pool.execute("ANALYZE scheduler.jobs")
                del rows
                dispatcher = Dispatcher(
                    Store(pool),
                    js,
                    misfire_grace_s=scheduler_settings.misfire_grace_s,
                    max_batch=scheduler_settings.dispatch_batch,
                )
                await dispatcher.load()
                wait_s = (due - utcnow()).total_seconds()
                if wait_s < 1:
                    raise RuntimeError(
                        f"set-up took too long: the burst was due {-wait_s:.1f} s ago"
                    )
                log(f"burst: {n:,} jobs loaded; due in {wait_s:.1f} s")
                loop = asyncio.create_task(dispatcher.run_forever())
                try:
                    # The stream is read once the burst is in it: a reader in this process
                    # would take the dispatcher's CPU (a consumer runs elsewhere when deployed).
                    # The figure comes from the server's own timestamps, not from when we read.
                    await stream_holds(js, n, timeout=wait_s + 120)
                finally:
                    loop.cancel()
                    await asyncio.gather(loop, return_exceptions=True)
                messages = await read_stream(js, n)
                log(f"burst: raw publish_async of {n:,} messages (baseline)")
                raw_s = await publish_all(js, raw)
        finally:
            await pool.close()
            await setup_pool.close()

    last = max(m.metadata.timestamp for m in messages)
    drain_s = (last - due).total_seconds()
    priorities = [_due_decoder.decode(m.data).priority for m in messages]
    out_of_order = out_of_priority_order(priorities) / n
    common = {"occurrences": n, "priorities": sorted(set(PRIORITIES))}
    return [
        Figure(
            name="burst_drain_s",
            value=drain_s,
            unit="s",
            target=TARGET_BURST_S,
            better="lower",
            baseline=raw_s,
            extra={**common, "baseline_is": "raw publish_async of as many messages, no scheduler"},
        ),
        Figure(
            name="burst_out_of_priority_order",
            value=out_of_order,
            unit="share",
            target=TARGET_OUT_OF_ORDER,
            better="lower",
            extra={
                **common,
                "first_message_after_due_s": (
                    min(m.metadata.timestamp for m in messages) - due
                ).total_seconds(),
            },
        ),
    ]


# -- lateness at a steady rate ---------------------------------------------------------------------


async def lateness(servers: Servers, rate: int, seconds: float) -> list[Figure]:
    url = servers.database("bench_lateness")
    period = 10
    jobs = rate * period
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        setup_pool = await migrated_pool(url, ("scheduler", "belltower_scheduler"))
        pool = await create_pool(url)
        try:
            async with jetstream(nats_server.url, settings) as (_, js):
                start = utcnow().replace(microsecond=0) + timedelta(seconds=15)
                now = datetime.now(UTC)
                rows = []
                for i in range(jobs):
                    first = start + timedelta(seconds=i / rate)
                    schedule = Schedule(rule=Every(seconds=period), start=first)
                    rows.append(job_row(i, schedule, first, now, {"message": f"steady {i}"}))
                await insert_jobs(setup_pool, rows)
                del rows
                dispatcher = Dispatcher(Store(pool), js)
                await dispatcher.load()
                wait_s = (start - utcnow()).total_seconds()
                if wait_s < 1:
                    raise RuntimeError(
                        "set-up took too long: the first occurrences are already due"
                    )
                log(
                    f"lateness: {jobs:,} jobs, {rate:,} occurrences/s for {seconds:g} s from {wait_s:.1f} s on"
                )
                expected = int(rate * seconds)
                loop = asyncio.create_task(dispatcher.run_forever())
                try:
                    await asyncio.sleep(wait_s + seconds)
                    loop.cancel()
                    await asyncio.gather(loop, return_exceptions=True)
                    end = start + timedelta(seconds=seconds)
                    info = await js.stream_info(DUE_STREAM)
                    messages = await read_stream(js, info.state.messages)
                finally:
                    loop.cancel()
        finally:
            await pool.close()
            await setup_pool.close()

    late_ms = []
    for m in messages:
        scheduled = _due_decoder.decode(m.data).scheduled_for
        if scheduled < end:
            late_ms.append((m.metadata.timestamp - scheduled).total_seconds() * 1000)
    if len(late_ms) < expected * 0.95:
        raise RuntimeError(
            f"only {len(late_ms):,} of {expected:,} occurrences were dispatched in time"
        )
    q = statistics.quantiles(late_ms, n=100)
    common = {
        "rate_per_s": rate,
        "seconds": seconds,
        "occurrences": len(late_ms),
        "max_ms": max(late_ms),
    }
    return [
        Figure(
            "lateness_p50_ms",
            statistics.median(late_ms),
            "ms",
            TARGET_P50_MS,
            "lower",
            extra=common,
        ),
        Figure("lateness_p99_ms", q[98], "ms", TARGET_P99_MS, "lower", extra=common),
    ]


# -- failover ------------------------------------------------------------------------------------


async def failover(servers: Servers, n: int) -> list[Figure]:
    url = servers.database("bench_failover")
    work_dir = servers.work_dir / "failover"
    lease_s = SchedulerSettings.model_fields["scheduler_lease_s"].default
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        setup_pool = await migrated_pool(url, ("scheduler", "belltower_scheduler"))
        try:
            async with jetstream(nats_server.url, settings) as (nc, _):
                now = datetime.now(UTC)
                canary = job_row(0, Schedule(rule=Every(seconds=1)), now, now, {"message": "tick"})
                await insert_jobs(setup_pool, [canary])
                # No worker runs here, so no run ever finishes: with the default overlap policy
                # (skip) every tick after the first would be skipped, and nothing to time.
                await setup_pool.execute(
                    'UPDATE scheduler.jobs SET policy = \'{"overlap": "allow"}\' WHERE id = $1',
                    canary[0],
                )
                if n > 1:
                    later = now + timedelta(days=1)
                    await insert_jobs(
                        setup_pool,
                        [
                            job_row(
                                i, Schedule(rule=Every(seconds=86400), start=later), later, now, {}
                            )
                            for i in range(1, n)
                        ],
                    )
                await setup_pool.execute("ANALYZE scheduler.jobs")
                env = service_env(nats_server.url, url, work_dir)
                leader = Service(
                    "belltower-scheduler",
                    {**env, "BELLTOWER_SCHEDULER_REPLICA_ID": "leader"},
                    work_dir,
                    "scheduler-leader",
                )
                standby = Service(
                    "belltower-scheduler",
                    {**env, "BELLTOWER_SCHEDULER_REPLICA_ID": "standby"},
                    work_dir,
                    "scheduler-standby",
                )
                tokens: list[tuple[float, int]] = []

                async def record(msg: Any) -> None:
                    tokens.append((time.monotonic(), int(msg.headers[FENCE_HEADER])))

                sub = await nc.subscribe(DUE_SUBJECTS, cb=record)
                try:
                    async with services(leader):
                        log(f"failover: leader loading {n:,} jobs")
                        await wait_until(
                            "the leader's first dispatch", _some(tokens), 300, leader, interval=0.05
                        )
                        async with services(standby):
                            await asyncio.sleep(max(3.0, 4 * lease_s / 3))  # standby up and loaded
                            standby.check_alive()
                            leader_token = tokens[-1][1]
                            log("failover: SIGKILL the leader")
                            assert leader.proc is not None
                            leader.proc.send_signal(signal.SIGKILL)
                            killed_at = time.monotonic()
                            await wait_until(
                                "the standby's first dispatch",
                                _some(tokens, lambda t: t != leader_token),
                                120,
                                standby,
                                interval=0.01,
                            )
                            first = min(at for at, t in tokens if t != leader_token)
                finally:
                    await sub.unsubscribe()
        finally:
            await setup_pool.close()
    failover_s = first - killed_at
    return [
        Figure(
            "failover_s",
            failover_s,
            "s",
            TARGET_FAILOVER_S,
            "lower",
            extra={
                "jobs": n,
                "lease_s": lease_s,
                "includes": "lease expiry, standby load of all jobs, first dispatch",
            },
        )
    ]


def _some(tokens: list[tuple[float, int]], which: Any = None):
    async def check() -> bool:
        return any(which is None or which(t) for _, t in tokens)

    return check
