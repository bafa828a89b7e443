"""``history_ingest_rate``: runs per second the history service records in PostgreSQL.

``runs`` canary runs (a started and a finished CloudEvent each, built from the real Structs) are
published to the runs stream first; then the ``belltower-history`` process starts. The clock
runs from the moment its durable consumer exists (it has migrated and connected; nothing has
been fetched yet) until every run is in ``history.runs`` as finished, so the figure is the
consume-decode-upsert-ack loop alone, not the publishers nor the interpreter's start-up.
Each run is two events, its started and finished ones 1,000 events apart in the stream (see
``data.run_events``), so the figure counts runs (the events per second are in the line too),
with the CPU per 1,000 runs. Where a batch starts decides how many runs have both events in it
(written as one row): with history's batches of 4,000 events that is 1 to 1.5 row writes per
run, with the 2,000 of before 1 to 2 (about 1.4 measured); ``batch_size`` is in the line.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import asyncpg
from nats.js.errors import NotFoundError

from belltower.subjects import HISTORY_CONSUMER, RUNS_STREAM
from belltower_history.app import HistoryService

from .data import run_events
from .figures import Figure, publish_all
from .profiling import SpyGroup
from .stack import (
    FinishedRuns,
    Servers,
    Service,
    cpu_seconds,
    fresh_nats,
    jetstream,
    log,
    service_env,
    services,
    settings_for,
    wait_until,
)

TARGET_RATE = 20_000.0


async def run(servers: Servers, runs: int, profile_dir: Path | None = None) -> Figure:
    url = servers.database("bench_history")
    work_dir = servers.work_dir / "ingest"
    events = 2 * runs
    async with fresh_nats() as nats_server:
        settings = settings_for(nats_server.url, url)
        async with jetstream(nats_server.url, settings) as (_, js):
            log(f"history: publishing {events:,} run events")
            publish_s = await publish_all(js, run_events(runs))
            stored = (await js.stream_info(RUNS_STREAM)).state.messages
            if stored != events:
                raise RuntimeError(f"{RUNS_STREAM} holds {stored:,} events, expected {events:,}")

            history = Service(
                "belltower-history", service_env(nats_server.url, url, work_dir), work_dir
            )
            pool: asyncpg.Pool | None = None
            async with services(history):

                async def consumer_exists() -> bool:
                    try:
                        await js.consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
                    except NotFoundError:
                        return False
                    return True

                started = await wait_until(
                    "history consumer", consumer_exists, 90, history, interval=0.005
                )
                cpu_before = {
                    "history": history.cpu_s(),
                    "postgres": cpu_seconds(servers.pg.pid),
                    "nats-server": cpu_seconds(nats_server.pid),
                }
                spies = SpyGroup(profile_dir, "ingest", {"history": history.pid})
                spies.start()
                log(f"history: consuming {events:,} events")
                pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
                assert pool is not None
                try:
                    done = await wait_until(
                        "all runs recorded",
                        FinishedRuns(pool, runs),
                        max(120.0, events / 500),
                        history,
                        interval=0.05,
                    )
                finally:
                    await spies.stop()
                    cpu = {
                        "history": round(history.cpu_s() - cpu_before["history"], 2),
                        "postgres": round(cpu_seconds(servers.pg.pid) - cpu_before["postgres"], 2),
                        "nats-server": round(
                            cpu_seconds(nats_server.pid) - cpu_before["nats-server"], 2
                        ),
                    }
                    await pool.close()

                async def all_acked() -> bool:
                    info = await js.consumer_info(RUNS_STREAM, HISTORY_CONSUMER)
                    return info.num_pending == 0 and info.num_ack_pending == 0

                await wait_until("every event acked", all_acked, 30, history, interval=0.05)

    elapsed = done - started
    return Figure(
        name="history_ingest_rate",
        value=runs / elapsed,
        unit="runs/s",
        target=TARGET_RATE,
        better="higher",
        extra={
            "events": events,
            "runs": runs,
            "elapsed_s": elapsed,
            "events_per_s": round(events / elapsed),
            "prepublish_events_per_s": round(events / publish_s),
            "batch_size": inspect.signature(HistoryService).parameters["batch_size"].default,
            "cpu_s": cpu,
            "cpu_s_per_1000_runs": {k: round(1000 * v / runs, 3) for k, v in cpu.items()},
        },
    )
