"""``dispatch_rate``: how fast the scheduler's Dispatcher gets a morning's worth of due work out.

The Dispatcher runs in this process on the service's own classes (``Store``, ``Dispatcher``,
``SchedulerSettings`` defaults), against real PostgreSQL and JetStream: ``n`` jobs whose next
occurrence is a few seconds past, loaded from ``scheduler.jobs`` as at start-up, then one
``tick()`` timed until every occurrence is in the ledger, published, confirmed by JetStream
and marked ``dispatched``. In the same run and on the same connection, the same number of
equivalent messages is published raw with ``publish_async``, before and after, and the better
of the two is the baseline: the ratio says how much of the client's ceiling planning and the
ledger leave.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import asyncpg
from nats.js import JetStreamContext

from belltower.db import create_pool
from belltower.events import utcnow
from belltower.subjects import DUE_STREAM
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.fencing import Fence
from belltower_scheduler.settings import SchedulerSettings
from belltower_scheduler.store import LedgerRow, Store

from .data import due_at_once_rows, insert_jobs, raw_due_messages
from .figures import Figure, publish_all
from .profiling import SpyGroup
from .stack import Servers, cpu_seconds, fresh_nats, jetstream, log, migrated_pool, settings_for

TARGET_RATE = 20_000.0
"""What the dispatcher must keep up, so that a morning's burst never waits on it (the raw
``publish_async`` baseline of the same run says what the client itself allows)."""
TARGET_RATIO = 0.3


class _BusyClock:
    """Seconds during which at least one call was running: the union of their intervals, so
    calls running side by side (marks of several batches) are not counted twice."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._running = 0
        self._since = 0.0

    def __enter__(self) -> None:
        if self._running == 0:
            self._since = time.perf_counter()
        self._running += 1

    def __exit__(self, *_: object) -> None:
        self._running -= 1
        if self._running == 0:
            self.seconds += time.perf_counter() - self._since


class TimedStore(Store):
    """The service's Store, with the time spent in its two hot statements added up.

    Subclassing (not patching) keeps the SQL exactly the service's while splitting a tick into
    ledger writes and the rest (planning, encoding, publishing, waiting for acks).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.planning = _BusyClock()
        self.marking = _BusyClock()

    async def plan(
        self,
        occurrences: Sequence[LedgerRow],
        next_runs: Sequence[tuple[str, datetime | None]],
        fence: Fence | None = None,
    ) -> set[str]:
        with self.planning:
            return await super().plan(occurrences, next_runs, fence=fence)

    async def mark_dispatched(
        self, ids: Sequence[str], at: datetime, fence: Fence | None = None
    ) -> None:
        with self.marking:
            await super().mark_dispatched(ids, at, fence=fence)


async def run(servers: Servers, n: int, profile_dir: Path | None = None) -> Figure:
    url = servers.database("bench_dispatch")
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        scheduler_settings = SchedulerSettings(nats_url=nats_server.url, database_url=url)
        setup_pool = await migrated_pool(url, ("scheduler", "belltower_scheduler"))
        pool = await create_pool(url)  # the service's own pool settings
        try:
            async with jetstream(nats_server.url, settings) as (_, js):
                due = utcnow()
                rows = due_at_once_rows(n, due)
                raw = raw_due_messages(rows, due)

                log(f"dispatch: raw publish_async of {n:,} messages (baseline 1/2)")
                raw_first = n / await publish_all(js, raw)
                await _expect_messages(js, n)
                await js.purge_stream(DUE_STREAM)

                await insert_jobs(setup_pool, rows)
                await setup_pool.execute("ANALYZE scheduler.jobs")
                store = TimedStore(pool)
                dispatcher = Dispatcher(
                    store,
                    js,
                    misfire_grace_s=scheduler_settings.misfire_grace_s,
                    max_batch=scheduler_settings.dispatch_batch,
                )
                started = time.perf_counter()
                loaded = await dispatcher.load()
                load_s = time.perf_counter() - started
                late_s = (utcnow() - due).total_seconds()
                if late_s > scheduler_settings.misfire_grace_s * 0.8:
                    raise RuntimeError(
                        f"set-up took {late_s:.0f} s: the occurrences would be coalesced as misfires"
                    )

                log(
                    f"dispatch: tick() over {loaded:,} due jobs, {late_s:.1f} s after their due time"
                )
                spy = SpyGroup(profile_dir, "dispatch", {"tick": os.getpid()})
                profiler = cProfile.Profile() if profile_dir and not spy.available else None
                spy.start()
                if profiler:
                    profiler.enable()
                # The servers are this process's children: its own CPU is process_time().
                cpu_pids = {"postgres": servers.pg.pid, "nats-server": nats_server.pid}
                cpu_before = {name: cpu_seconds(pid) for name, pid in cpu_pids.items()}
                own_before = time.process_time()
                started = time.perf_counter()
                published = await dispatcher.tick()
                tick_s = time.perf_counter() - started
                cpu = {"scheduler": round(time.process_time() - own_before, 2)} | {
                    name: round(cpu_seconds(pid) - cpu_before[name], 2)
                    for name, pid in cpu_pids.items()
                }
                if profiler and profile_dir:
                    profiler.disable()
                    _save_profile(profiler, profile_dir / "dispatch_tick.pstats")
                await spy.stop()

                dispatched = await setup_pool.fetchval(
                    "SELECT count(*) FROM scheduler.occurrences WHERE state = 'dispatched'"
                )
                await _expect_messages(js, n)
                if published != n or dispatched != n:
                    raise RuntimeError(
                        f"tick published {published:,} and marked {dispatched:,} of {n:,} occurrences"
                    )
                await js.purge_stream(DUE_STREAM)

                log(f"dispatch: raw publish_async of {n:,} messages (baseline 2/2)")
                raw = raw_due_messages(
                    rows, due
                )  # new ids: the first ones are still in the de-duplication window
                raw_second = n / await publish_all(js, raw)
                await _expect_messages(js, n)
        finally:
            await pool.close()
            await setup_pool.close()

    rate = n / tick_s
    baseline = max(raw_first, raw_second)
    ratio = rate / baseline
    return Figure(
        name="dispatch_rate",
        value=rate,
        unit="occurrences/s",
        target=TARGET_RATE,
        better="higher",
        baseline=baseline,
        also_required=ratio >= TARGET_RATIO,
        extra={
            "ratio_to_raw_publish": round(ratio, 3),
            "ratio_target": TARGET_RATIO,
            "occurrences": n,
            "tick_s": tick_s,
            "ledger_plan_s": store.planning.seconds,
            "mark_dispatched_s": store.marking.seconds,
            "publish_and_python_s": tick_s - store.planning.seconds - store.marking.seconds,
            "raw_publish_rates": [round(raw_first), round(raw_second)],
            "load_s": load_s,
            "message_bytes": len(raw[0][1]),
            "max_batch": scheduler_settings.dispatch_batch,
            # The bench process is the scheduler here (its Dispatcher runs in it).
            "cpu_s": cpu,
            "cpu_us_per_occurrence": {
                **{name: round(1e6 * s / n, 1) for name, s in cpu.items()},
                "total": round(1e6 * sum(cpu.values()) / n, 1),
            },
        },
    )


async def _expect_messages(js: JetStreamContext, n: int) -> None:
    info = await js.stream_info(DUE_STREAM)
    if info.state.messages != n:
        raise RuntimeError(f"{DUE_STREAM} holds {info.state.messages:,} messages, expected {n:,}")


def _save_profile(profiler: cProfile.Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    log(f"profile of tick() saved to {path}; top entries:\n{text.getvalue()}")
