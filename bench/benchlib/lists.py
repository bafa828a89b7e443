"""``jobs_page_*_ms`` and ``runs_page_*_ms``: list pages of the HTTP API with a district's data.

100,000 jobs and 1,000,000 runs are copied into the database (``COPY``), then the scheduler,
history and the console run as processes and ``GET /api/v1/jobs`` (sorted by title, 25 a page,
each job's last run looked up as the Jobs page does) and ``GET /api/v1/runs`` (newest first, 50
a page) are timed, the first page and a deep one (a cursor 90% of the way through), as p50 and
p95 over repeated requests. The baseline, in the same run, is ``GET /api/v1/me``: the console's
floor (HTTP, token check) with no list behind it. ``jobs_import_s`` then imports 100,000 new
jobs as one JSON file through ``POST /api/v1/import`` (staged batches, one transaction), with
the ``COPY`` of the seeded jobs as its baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from belltower import paging
from belltower.api import RunPolicy
from belltower.schedule import Every, Schedule, schedule_encoder
from belltower_dev.localservers import free_port
from belltower_history import listing as run_listing
from belltower_scheduler import listing as job_listing

from .data import CANARY, CANARY_POOL, JOB_COLUMNS
from .figures import Figure
from .stack import Servers, Service, fresh_nats, log, migrated_pool, service_env, services

TARGET_MS = 100.0
TARGET_IMPORT_S = 120.0
REPEATS = 40
ADMIN = ("bench-admin", "bench-admin-password-1")
RUN_COLUMNS = (
    "occurrence_id", "run_id", "job_id", "job_type", "job_title", "pool", "status", "trigger",
    "priority", "scheduled_for", "dispatched_at", "started_at", "finished_at", "duration_ms",
    "summary",
)  # fmt: skip


async def seed(pool: asyncpg.Pool, jobs: int, runs: int) -> float:
    """``jobs`` paused jobs (so the scheduler plans none) and ``runs`` finished runs of them."""
    rng = random.Random(18)
    now = datetime.now(UTC)
    schedule = schedule_encoder.encode(Schedule(rule=Every(seconds=3600))).decode()
    policy = schedule_encoder.encode(RunPolicy()).decode()
    ids = [uuid.uuid4() for _ in range(jobs)]
    words = ("Attendance", "Late bus", "Lunch balance", "Canvas sync", "Report cards", "Nightly")
    job_rows = [
        (
            job_id, f"{words[i % len(words)]} {rng.randrange(10**6):06d}", CANARY, CANARY_POOL,
            "{}", schedule, rng.randrange(1, 1000), True, None, None, None, now, now,
        )
        for i, job_id in enumerate(ids)
    ]  # fmt: skip
    started = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "jobs", schema_name="scheduler", columns=list(JOB_COLUMNS), records=job_rows
        )
        jobs_s = time.perf_counter() - started
        await conn.execute("UPDATE scheduler.jobs SET policy = $1::jsonb", policy)
        batch = 100_000
        for start in range(0, runs, batch):
            rows = []
            for i in range(start, min(runs, start + batch)):
                at = now - timedelta(seconds=i * 30)
                rows.append(
                    (
                        uuid.uuid4(), uuid.uuid4(), ids[i % jobs], CANARY, "Bench job", CANARY_POOL,
                        "failed" if i % 17 == 0 else "succeeded", "schedule", 500, at, at, at,
                        at + timedelta(seconds=1), rng.randrange(50, 5000), f"run {i}",
                    )
                )  # fmt: skip
            await conn.copy_records_to_table(
                "runs", schema_name="history", columns=list(RUN_COLUMNS), records=rows
            )
        await conn.execute("ANALYZE scheduler.jobs; ANALYZE history.runs")
    log(f"lists: {jobs:,} jobs and {runs:,} runs copied in {time.perf_counter() - started:.1f} s")
    return jobs_s


async def deep_cursors(pool: asyncpg.Pool, jobs: int, runs: int) -> tuple[str, str]:
    """Cursors 90% of the way through the jobs by title and the runs newest first, as the
    pages before them would have handed out."""
    order = paging.parse_sort("title", job_listing.SORTS)
    row = await pool.fetchrow(
        "SELECT lower(title)::text AS k0, id::text AS k1 FROM scheduler.jobs "
        "ORDER BY lower(title), id OFFSET $1 LIMIT 1",
        int(jobs * 0.9),
    )
    jobs_cursor = paging.encode_cursor(
        order, paging.scope_of({"q": "", "type": "", "state": ""}), [row["k0"], row["k1"]]
    )
    run_order = paging.parse_sort("-scheduled_for", run_listing.SORTS)
    run = await pool.fetchrow(
        "SELECT scheduled_for::text AS k0, occurrence_id::text AS k1 FROM history.runs "
        "ORDER BY scheduled_for DESC, occurrence_id DESC OFFSET $1 LIMIT 1",
        int(runs * 0.9),
    )
    scope = paging.scope_of({"job_id": None, "status": None, "since": None, "until": None, "q": ""})
    return jobs_cursor, paging.encode_cursor(run_order, scope, [run["k0"], run["k1"]])


async def timed(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> list[float]:
    """Milliseconds of ``REPEATS`` requests, after two to warm up (connection, plan cache)."""
    out = []
    for i in range(REPEATS + 2):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
        if i >= 2:
            out.append(elapsed)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def token(url: str) -> str:
    async with httpx.AsyncClient(base_url=url + "/api/v1", timeout=30) as http:
        session = await http.post("/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        session.raise_for_status()
        made = await http.post(
            "/tokens",
            json={"name": "bench"},
            headers={"X-CSRF-Token": session.json()["csrf_token"]},
        )
        made.raise_for_status()
        return str(made.json()["token"])


async def wait_ready(client: httpx.AsyncClient, path: str, *watch: Service) -> None:
    """Until ``path`` answers 200: the console is up and the scheduler has loaded the jobs."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for service in watch:
            service.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(path)).status_code == 200:
                return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{path} did not answer within 180 s")


async def import_time(client: httpx.AsyncClient, count: int) -> float:
    """Seconds ``POST /api/v1/import`` takes for ``count`` new jobs as one JSON file, read as
    the CLI reads it (NDJSON progress, then the result)."""
    documents = [
        {
            "type": CANARY, "title": f"Imported {i:06d}", "paused": True,
            "schedule": {"rule": {"kind": "every", "seconds": 3600}, "tz": "UTC"},
            "params": {"message": "hello"},
        }
        for i in range(count)
    ]  # fmt: skip
    body = json.dumps(documents)
    log(f"lists: importing {count:,} jobs ({len(body) / 1e6:.1f} MB of JSON)")
    started = time.perf_counter()
    last = ""
    async with client.stream(
        "POST",
        "/import",
        content=body,
        headers={"Content-Type": "application/json", "Accept": "application/x-ndjson"},
        timeout=3600,
    ) as response:
        async for line in response.aiter_lines():
            last = line or last
    elapsed = time.perf_counter() - started
    result = json.loads(last).get("result")
    if not result or not result["applied"]:
        raise RuntimeError(f"the import was not applied: {last[:500]}")
    return elapsed


async def run(servers: Servers, jobs: int, runs: int, imports: int) -> list[Figure]:
    url = servers.database("bench_lists")
    work_dir = servers.work_dir / "lists"
    pool = await migrated_pool(
        url, ("scheduler", "belltower_scheduler"), ("history", "belltower_history")
    )
    try:
        seed_s = await seed(pool, jobs, runs)
        jobs_cursor, runs_cursor = await deep_cursors(pool, jobs, runs)
    finally:
        await pool.close()
    port = free_port()
    async with fresh_nats() as nats_server:
        env = service_env(nats_server.url, url, work_dir)
        console_env = {
            **env,
            "BELLTOWER_CONSOLE_PORT": str(port),
            "BELLTOWER_CONSOLE_ADMIN_USER": ADMIN[0],
            "BELLTOWER_CONSOLE_ADMIN_PASSWORD": ADMIN[1],
        }
        scheduler = Service("belltower-scheduler", env, work_dir)
        history = Service("belltower-history", env, work_dir)
        console = Service("belltower-console", console_env, work_dir)
        # The worker registers the canary job type an import is checked against.
        worker = Service("belltower-notifier-worker", env, work_dir)
        async with services(scheduler, history, console, worker):
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as bare_client:
                await wait_ready(bare_client, "/readyz", scheduler, history, console)
            headers = {"Authorization": f"Bearer {await token(base)}"}
            async with httpx.AsyncClient(
                base_url=base + "/api/v1", headers=headers, timeout=30
            ) as client:
                await wait_ready(client, "/jobs?limit=1", scheduler, history, console)
                floor = await timed(client, "/me", {})
                measured = {
                    "jobs_page_first_ms": await timed(client, "/jobs", {"sort": "title"}),
                    "jobs_page_deep_ms": await timed(
                        client, "/jobs", {"sort": "title", "cursor": jobs_cursor}
                    ),
                    "jobs_page_first_no_last_run_ms": await timed(
                        client, "/jobs", {"sort": "title", "last_run": "false"}
                    ),
                    "runs_page_first_ms": await timed(client, "/runs", {}),
                    "runs_page_deep_ms": await timed(client, "/runs", {"cursor": runs_cursor}),
                }
                for _ in range(600):  # the worker has registered the canary type
                    types = (await client.get("/job-types")).json()
                    if any(t["name"] == CANARY for t in types):
                        break
                    await asyncio.sleep(0.2)
                try:
                    import_s: float | None = await import_time(client, imports)
                    import_error = None
                except Exception as exc:  # the page figures still stand
                    import_s, import_error = None, f"{type(exc).__name__}: {exc}"[:500]
    bare = measured.pop("jobs_page_first_no_last_run_ms")
    figures = [
        Figure(
            name="jobs_import_s",
            value=import_s,
            unit="s",
            target=TARGET_IMPORT_S,
            better="lower",
            baseline=seed_s,
            extra={
                "jobs": imports,
                "jobs_per_s": round(imports / import_s) if import_s else None,
                "baseline": f"COPY of {jobs:,} job rows with their indexes",
            },
            error=import_error,
        )
    ]
    for name, values in measured.items():
        figures.append(
            Figure(
                name=name,
                value=p95(values),
                unit="ms (p95)",
                target=TARGET_MS,
                better="lower",
                baseline=p95(floor),
                extra={
                    "p50_ms": statistics.median(values),
                    "baseline_p50_ms": statistics.median(floor),
                    "baseline": "GET /api/v1/me",
                    "jobs": jobs,
                    "runs": runs,
                    "requests": len(values),
                    **(
                        {"without_last_runs_p50_ms": statistics.median(bare)}
                        if name.startswith("jobs")
                        else {}
                    ),
                },
            )
        )
    return figures
