"""``e2e_runs_rate``: canary runs per second from schedule to history, all four services running.

The services run as separate processes from their console scripts with a deployment's
environment. History and both workers start first; then ``n`` ``system.canary`` jobs due at one
instant a few seconds ahead are written to ``scheduler.jobs`` and the scheduler starts, loads
them and waits. The clock runs from that due instant until history holds ``n`` finished runs,
so start-up is not counted but everything after the bell is: planning, the ledger, JetStream,
claims, the handler, run events and the history writes. The ledger and history timestamps
split the time by stage, and the CPU each process used says which one the machine waited on.

Other work on the machine (other benchmarks, other people's builds) skews a rate far more
than the CPU a run costs, so each figure also gives ``cpu_s_per_1000_runs`` per process (and
its total): that is the steadier figure to compare before and after a change. With several
notifier-worker processes (``--e2e-workers 1,2``) each has its own line, so an operator sees
what a replica buys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from belltower.errors import Unavailable
from belltower.events import utcnow
from belltower.operations import JOB_TYPES_LIST
from belltower.rpc import ApiClient
from belltower.subjects import DUE_STREAM, HISTORY_CONSUMER, RUNS_STREAM, worker_consumer

from .data import due_at_once_rows, insert_jobs
from .figures import Figure
from .profiling import SpyGroup
from .stack import (
    FinishedRuns,
    Servers,
    Service,
    cpu_seconds,
    fresh_nats,
    jetstream,
    log,
    migrated_pool,
    service_env,
    services,
    settings_for,
    wait_until,
)

TARGET_RATE = 3_000.0
LEAD_S = 15.0
"""How far ahead of now the jobs are due: enough for the scheduler to start and load them."""


async def consumers_exist(js: JetStreamContext, wanted: list[tuple[str, str]]) -> bool:
    for stream, consumer in wanted:
        try:
            await js.consumer_info(stream, consumer)
        except NotFoundError:
            return False
    return True


async def scheduler_answers(nc: NatsClient) -> bool:
    try:
        await ApiClient(nc, timeout=2.0).call(JOB_TYPES_LIST)
    except Unavailable:
        return False
    return True


async def run(
    servers: Servers, n: int, profile_dir: Path | None = None, worker_replicas: int = 1
) -> Figure:
    url = servers.database("bench_e2e")
    work_dir = servers.work_dir / "e2e"
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        pool = await migrated_pool(
            url, ("scheduler", "belltower_scheduler"), ("history", "belltower_history")
        )
        try:
            async with jetstream(nats_server.url, settings) as (nc, js):
                env = service_env(nats_server.url, url, work_dir)
                history = Service("belltower-history", env, work_dir)
                notifiers = [
                    Service(
                        "belltower-notifier-worker", env, work_dir, name=f"notifier-worker-{i + 1}"
                    )
                    for i in range(worker_replicas)
                ]
                integration = Service("belltower-integration-worker", env, work_dir)
                scheduler = Service("belltower-scheduler", env, work_dir)
                async with services(history, *notifiers, integration):
                    log("e2e: waiting for history and the workers")
                    wanted = [
                        (RUNS_STREAM, HISTORY_CONSUMER),
                        (DUE_STREAM, worker_consumer("notifier")),
                        (DUE_STREAM, worker_consumer("integration")),
                    ]
                    await wait_until(
                        "consumers",
                        lambda: consumers_exist(js, wanted),
                        90,
                        history,
                        *notifiers,
                        integration,
                    )
                    due = utcnow() + timedelta(seconds=LEAD_S)
                    await insert_jobs(pool, due_at_once_rows(n, due))
                    async with services(scheduler):
                        await wait_until(
                            "scheduler API",
                            lambda: scheduler_answers(nc),
                            90,
                            scheduler,
                            interval=0.1,
                        )
                        spare_s = (due - utcnow()).total_seconds()
                        if spare_s < 0:
                            raise RuntimeError(
                                f"the scheduler became ready {-spare_s:.1f} s after the jobs were due; raise LEAD_S"
                            )
                        log(
                            f"e2e: {n:,} canary runs due in {spare_s:.1f} s ({worker_replicas} notifier-worker process(es))"
                        )
                        processes: dict[str, int | None] = {
                            "scheduler": scheduler.pid,
                            **{w.name: w.pid for w in notifiers},
                            "history": history.pid,
                            "integration-worker": integration.pid,
                            "nats-server": nats_server.pid,
                            "postgres": servers.pg.pid,
                        }
                        watched = (scheduler, *notifiers, history, integration)
                        measured = await _measure(
                            pool, n, due.timestamp(), processes, watched, profile_dir
                        )
                        stages = await _stages(pool, due.timestamp())
        finally:
            await pool.close()

    finished, elapsed, cpu = measured
    complete = finished >= n
    per_1000 = {name: round(1000 * s / max(finished, 1), 3) for name, s in cpu.items()}
    per_1000["total"] = round(sum(per_1000.values()), 3)
    return Figure(
        name=figure_name(worker_replicas),
        value=finished / elapsed,
        unit="runs/s",
        target=TARGET_RATE,
        better="higher",
        also_required=complete,
        extra={
            "runs": n,
            "recorded": finished,
            "complete": complete,
            "elapsed_s": elapsed,
            "notifier_workers": worker_replicas,
            **stages,
            "cpu_s": cpu,
            "cpu_s_per_1000_runs": per_1000,
        },
    )


def figure_name(worker_replicas: int) -> str:
    """``e2e_runs_rate`` for one notifier-worker process, ``e2e_runs_rate_2_workers`` for two."""
    return "e2e_runs_rate" if worker_replicas == 1 else f"e2e_runs_rate_{worker_replicas}_workers"


async def _measure(
    pool: asyncpg.Pool,
    n: int,
    due_wall: float,
    processes: dict[str, int | None],
    watched: tuple[Service, ...],
    profile_dir: Path | None,
) -> tuple[int, float, dict[str, float]]:
    """Wait for the bell, then for history to hold ``n`` finished runs; CPU used by each process meanwhile."""
    spies = SpyGroup(profile_dir, "e2e", {k: v for k, v in processes.items() if k != "postgres"})
    await asyncio.sleep(max(0.0, due_wall - time.time() - 0.5))
    cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    spies.start()
    await asyncio.sleep(max(0.0, due_wall - time.time()))
    recorded = FinishedRuns(pool, n)

    with contextlib.suppress(TimeoutError):  # an incomplete run is reported as such, not raised
        await wait_until("all runs recorded", recorded, max(120.0, n / 50), *watched, interval=0.05)
    done_wall = time.time()
    await spies.stop()
    cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in processes.items()}
    return recorded.count, done_wall - due_wall, cpu


async def _stages(pool: asyncpg.Pool, due_wall: float) -> dict[str, Any]:
    """When each stage finished, in seconds after the due instant, from the services' own records."""
    ledger = await pool.fetchrow(
        "SELECT max(dispatched_at) AS last_dispatched, count(*) FILTER (WHERE state = 'dispatched') AS dispatched "
        "FROM scheduler.occurrences"
    )
    runs = await pool.fetchrow(
        "SELECT min(started_at) AS first_started, max(finished_at) AS last_finished, "
        "count(*) FILTER (WHERE status <> 'succeeded') AS not_succeeded FROM history.runs"
    )
    lateness = await pool.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) AS p50, "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) AS p99 "
        "FROM history.runs WHERE started_at IS NOT NULL"
    )

    def since_due(value: Any) -> float | None:
        with contextlib.suppress(AttributeError):
            return round(value.timestamp() - due_wall, 3)
        return None

    return {
        "dispatched": ledger["dispatched"],
        "last_dispatched_s": since_due(ledger["last_dispatched"]),
        "first_started_s": since_due(runs["first_started"]),
        "last_finished_s": since_due(runs["last_finished"]),
        "start_lateness_p50_s": round(float(lateness["p50"] or 0), 3),
        "start_lateness_p99_s": round(float(lateness["p99"] or 0), 3),
        "not_succeeded": runs["not_succeeded"],
    }
