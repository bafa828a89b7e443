"""``schedules_loaded`` and ``schedules_load_s``: what holding every schedule in memory costs.

The scheduler keeps every job in memory: an ``Entry`` (its id, title, encoded params, next due
instant and a few references) and a slot in the due queue's bucket for that instant, sharing
compiled schedules, the fields that repeat across jobs (a shared spec of type, pool, priority,
timeout, policy, result mail) and the datetimes of instants that several jobs are due at. Its
footprint grows with the number of jobs, and a restart or failover reloads them all before the
first dispatch. Measured twice:

- as deployed: the ``belltower-scheduler`` process started on an empty database and on one with
  ``n`` jobs of varied, realistic schedules; the difference of their resident set sizes once
  each is serving, divided by ``n``, is ``schedules_loaded`` in bytes per schedule, beyond
  the definitions' storage in PostgreSQL (it includes what the allocator
  keeps after loading, which is what a pod's memory limit sees);
- in this process, on the same rows: ``Dispatcher.load()`` timed (``schedules_load_s``), then
  traced with tracemalloc to say which objects the bytes are (extra keys).
"""

from __future__ import annotations

import asyncio
import gc
import linecache
import time
import tracemalloc
from typing import Any

from nats.aio.client import Client as NatsClient

from belltower.db import create_pool
from belltower_scheduler import entry as entry_module
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.store import Store

from .data import insert_jobs, varied_rows
from .e2e import scheduler_answers
from .figures import Figure
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

TARGET_BYTES = 500.0
TARGET_LOAD_S = 10.0
"""A restarted or failed-over scheduler should be dispatching again within the takeover target,
even with a million schedules."""
_CHUNK = 100_000

_SETTLE_S = 1.0


async def run(servers: Servers, n: int) -> list[Figure]:
    url = servers.database("bench_memory")
    work_dir = servers.work_dir / "memory"
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        setup_pool = await migrated_pool(url, ("scheduler", "belltower_scheduler"))
        try:
            async with jetstream(nats_server.url, settings) as (nc, js):
                env = service_env(nats_server.url, url, work_dir)
                log("memory: scheduler process with no jobs")
                empty_rss, empty_ready_s = await _serving_rss(
                    Service("belltower-scheduler", env, work_dir), nc
                )
                log(f"memory: writing {n:,} jobs with varied schedules")
                schedules: set[str] = set()
                for start in range(
                    0, n, _CHUNK
                ):  # in chunks: a million rows at once is gigabytes here
                    rows = varied_rows(min(_CHUNK, n - start), seed=7 + start)
                    schedules.update(row[5] for row in rows)
                    await insert_jobs(setup_pool, rows)
                    del rows
                distinct = len(schedules)
                del schedules
                await setup_pool.execute("ANALYZE scheduler.jobs")
                log(f"memory: scheduler process with {n:,} jobs")
                loaded_rss, loaded_ready_s = await _serving_rss(
                    Service("belltower-scheduler", env, work_dir), nc
                )

                log("memory: Dispatcher.load() in this process, timed then traced")
                pool = await create_pool(url)
                try:
                    load_s = await _timed_load(Dispatcher(Store(pool), js))
                    traced = await _traced_load(Dispatcher(Store(pool), js), n)
                finally:
                    await pool.close()
        finally:
            await setup_pool.close()

    per_schedule = (loaded_rss - empty_rss) / n
    common = {"schedules": n, "distinct_schedules": distinct}
    return [
        Figure(
            name="schedules_loaded",
            value=per_schedule,
            unit="bytes",
            target=TARGET_BYTES,
            better="lower",
            extra={
                **common,
                "rss_empty_mb": empty_rss / 2**20,
                "rss_loaded_mb": loaded_rss / 2**20,
                "python_heap_bytes_per_schedule": traced["per_schedule"],
                "top_allocation_sites": traced["sites"],
            },
        ),
        Figure(
            name="schedules_load_s",
            value=load_s,
            unit="s",
            target=TARGET_LOAD_S,
            better="lower",
            extra={
                **common,
                "process_ready_empty_s": empty_ready_s,
                "process_ready_loaded_s": loaded_ready_s,
            },
        ),
    ]


async def _serving_rss(scheduler: Service, nc: NatsClient) -> tuple[int, float]:
    """RSS of a scheduler once it answers its API (it loads before it subscribes), and its start time."""
    async with services(scheduler):
        ready = await wait_until(
            "scheduler API", lambda: scheduler_answers(nc), 120, scheduler, interval=0.05
        )
        ready_s = ready - scheduler.started_at
        await asyncio.sleep(_SETTLE_S)
        scheduler.check_alive()
        return scheduler.rss(), ready_s


async def _timed_load(dispatcher: Dispatcher) -> float:
    entry_module._compiled.cache_clear()
    entry_module.compiled_for_text.cache_clear()  # a fresh process compiles every schedule
    started = time.perf_counter()
    await dispatcher.load()
    return time.perf_counter() - started


async def _traced_load(dispatcher: Dispatcher, n: int) -> dict[str, Any]:
    """Bytes the loaded jobs keep on the Python heap, and the source lines that allocated most of them."""
    entry_module._compiled.cache_clear()
    entry_module.compiled_for_text.cache_clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await dispatcher.load()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "lineno")
    retained = sum(s.size_diff for s in stats)
    sites = []
    for stat in stats[:8]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
        code = linecache.getline(frame.filename, frame.lineno).strip()[:80]
        sites.append(
            {
                "at": f"{where}:{frame.lineno}",
                "bytes_per_schedule": round(stat.size_diff / n, 1),
                "code": code,
            }
        )
    return {"per_schedule": round(retained / n, 1), "sites": sites}
