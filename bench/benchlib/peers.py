"""``e2e_peer_celery_rate`` and ``e2e_peer_arq_rate``: the same workload on Celery and arq.

The workload is ``e2e_runs_rate``'s: ``n`` tasks all due at one instant a few seconds ahead,
each writing its run into PostgreSQL, the clock running from that instant until the table holds
``n`` rows. Celery 5 runs it with a Redis broker, ``apply_async(eta=...)`` and one prefork
worker with a child per core (``--concurrency`` = CPU count, the tuning Celery documents for
CPU-bound work; the default prefetch); arq with ``enqueue_job(_defer_until=...)`` and its
default worker (``max_jobs`` 10). Each task inserts one row with a connection kept per process
(psycopg in Celery's children, an asyncpg pool in arq), the way each tool is normally used.

Neither tool is a dependency of Belltower: they are installed into a virtualenv of their own
(``.venv-peers`` at the repository's root, reused while its requirements do not change) with
uv, and Redis is Debian's ``redis-server`` binary, started on a free port with a temporary
directory and no persistence, and stopped by its pid. Belltower's own figure is measured in the
same window, just before the peers, and printed as ``e2e_runs_rate_vs_peers`` with the best
peer as its baseline. The versions and settings go into each JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from belltower_dev.localservers import free_port

from . import e2e
from .figures import Figure
from .stack import Servers, cpu_seconds, log

REPO = Path(__file__).resolve().parents[2]
PEER_VENV = REPO / ".venv-peers"
REQUIREMENTS = ("celery[redis]>=5.4,<6", "arq>=0.26", "psycopg[binary]>=3.2", "asyncpg>=0.30")
TARGET_RATIO = 2.0
LEAD_S = 6.0
"""Seconds between the last enqueue and the due instant, on top of 4 ms per task to enqueue."""

_TABLE = "peer_runs"

CELERY_TASKS = """
import os
import psycopg
from celery import Celery
from celery.signals import worker_process_init

app = Celery("peer", broker=os.environ["PEER_REDIS_URL"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
_conn = None


@worker_process_init.connect
def _connect(**_):
    global _conn
    _conn = psycopg.connect(os.environ["PEER_DATABASE_URL"], autocommit=True)


@app.task(name="run")
def run(i):
    _conn.execute("INSERT INTO peer_runs (task) VALUES (%s)", (i,))
"""

ARQ_TASKS = """
import os
import asyncpg
from arq.connections import RedisSettings


async def startup(ctx):
    ctx["pool"] = await asyncpg.create_pool(os.environ["PEER_DATABASE_URL"], min_size=1, max_size=10)


async def shutdown(ctx):
    await ctx["pool"].close()


async def run(ctx, i):
    await ctx["pool"].execute("INSERT INTO peer_runs (task) VALUES ($1)", i)


class WorkerSettings:
    functions = [run]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings(port=int(os.environ["PEER_REDIS_PORT"]))
"""

CELERY_ENQUEUE = """
import os, sys
from datetime import datetime, UTC
from celery_tasks import run
n, due = int(sys.argv[1]), datetime.fromtimestamp(float(sys.argv[2]), UTC)
if n < 0:
    run.apply_async((-1,))
else:
    for i in range(n):
        run.apply_async((i,), eta=due)
"""

ARQ_ENQUEUE = """
import asyncio, os, sys
from datetime import datetime, UTC
from arq import create_pool
from arq_tasks import WorkerSettings


async def main():
    n, due = int(sys.argv[1]), datetime.fromtimestamp(float(sys.argv[2]), UTC)
    redis = await create_pool(WorkerSettings.redis_settings)
    if n < 0:
        await redis.enqueue_job("run", -1)
    else:
        for i in range(n):
            await redis.enqueue_job("run", i, _defer_until=due)
    await redis.aclose()

asyncio.run(main())
"""


def _uv() -> list[str]:
    uv = shutil.which("uv")
    return [uv] if uv else [sys.executable, "-m", "uv"]


def ensure_peer_venv() -> Path:
    """The peers' virtualenv, created or brought up to ``REQUIREMENTS`` with uv; its python."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".requirements"
    wanted = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"peers: installing {', '.join(REQUIREMENTS)} into {PEER_VENV.name}")
    subprocess.run(
        [*_uv(), "venv", "--quiet", "--python", sys.executable, str(PEER_VENV)], check=True
    )
    subprocess.run(
        [*_uv(), "pip", "install", "--quiet", "--python", str(python), *REQUIREMENTS], check=True
    )
    stamp.write_text(wanted)
    return python


def versions(python: Path) -> dict[str, str]:
    script = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({p: m.version(p) for p in ('celery', 'kombu', 'redis', 'arq', 'psycopg', 'asyncpg')}))"
    )
    out = subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True)
    found: dict[str, str] = json.loads(out.stdout)
    redis = subprocess.run(
        [_redis_server(), "--version"], check=True, capture_output=True, text=True
    ).stdout
    found["redis-server"] = next(
        (w.split("=", 1)[1] for w in redis.split() if w.startswith("v=")), redis.strip()
    )
    return found


def _redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found: install Debian's redis-server package "
            "(apt-get install redis-server) to measure the peers"
        )
    return binary


@contextlib.asynccontextmanager
async def redis_server(work_dir: Path) -> AsyncIterator[tuple[int, int]]:
    """A private Redis on a free port, no persistence, its files in ``work_dir``; yields port and pid."""
    port = free_port()
    data = work_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = _spawn(
        [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--save", "", "--appendonly", "no", "--daemonize", "no"],
        data, data / "redis.log", os.environ.copy(),
    )  # fmt: skip
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn(
    argv: list[str], cwd: Path, log_path: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start a peer process in its own session, its output appended to ``log_path``."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


async def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env)
    if await proc.wait() != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} exited with code {proc.returncode}")


async def _count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {_TABLE} WHERE task >= 0"))


async def _wait_rows(pool: asyncpg.Pool, target: int, timeout: float, *procs: Any) -> float:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a peer worker exited with code {proc.returncode}")
        if await _count(pool) >= target:
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target:,} peer runs not recorded within {timeout:g} s")
        await asyncio.sleep(0.05)


async def _measure_peer(
    name: str,
    python: Path,
    worker_argv: list[str],
    enqueue_script: str,
    env: dict[str, str],
    work_dir: Path,
    pool: asyncpg.Pool,
    n: int,
    pids: dict[str, int | None],
) -> tuple[float, float, dict[str, float]]:
    """Start the worker, warm it up, enqueue ``n`` due at one instant; rate, elapsed, CPU."""
    await pool.execute(f"TRUNCATE {_TABLE}")
    worker = _spawn(
        [str(python), "-m", *worker_argv], work_dir, work_dir / f"{name}-worker.log", env
    )
    try:
        enqueue = [str(python), str(work_dir / enqueue_script)]
        await _run([*enqueue, "-1", "0"], work_dir, env)
        deadline = time.monotonic() + 90
        while not await pool.fetchval(f"SELECT count(*) FROM {_TABLE} WHERE task < 0"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} worker did not start; see {name}-worker.log")
            await asyncio.sleep(0.1)
        due = time.time() + LEAD_S + n / 250  # enqueueing is slow on a busy machine
        log(f"peers: {name}: enqueueing {n:,} tasks due at one instant")
        await _run([*enqueue, str(n), str(due)], work_dir, env)
        if (spare := due - time.time()) < 0:
            raise RuntimeError(f"{name}: enqueueing ended {-spare:.1f} s after the due instant")
        await asyncio.sleep(max(0.0, due - time.time() - 0.3))
        pids = {"worker": worker.pid, **pids}
        before = {k: cpu_seconds(pid) for k, pid in pids.items()}
        await asyncio.sleep(max(0.0, due - time.time()))
        done = await _wait_rows(pool, n, max(120.0, n / 50), worker)
        cpu = {k: round(cpu_seconds(pid) - before[k], 2) for k, pid in pids.items()}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, 15)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait()
    elapsed = done - due
    return n / elapsed, elapsed, cpu


async def run(servers: Servers, n: int) -> list[Figure]:
    python = ensure_peer_venv()
    found = versions(python)
    cores = os.cpu_count() or 1
    work_dir = servers.work_dir / "peers"
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("celery_tasks.py", CELERY_TASKS),
        ("arq_tasks.py", ARQ_TASKS),
        ("celery_enqueue.py", CELERY_ENQUEUE),
        ("arq_enqueue.py", ARQ_ENQUEUE),
    ):
        (work_dir / name).write_text(text)

    log(f"peers: Belltower first, {n:,} runs, in the same window")
    own = await e2e.run(servers, n, None, 1)

    url = servers.database("bench_peers")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    await pool.execute(
        f"CREATE TABLE {_TABLE} (task int NOT NULL, at timestamptz DEFAULT clock_timestamp())"
    )
    celery_settings = {
        "pool": "prefork",
        "concurrency": cores,
        "prefetch_multiplier": 4,
        "broker": "redis",
        "eta": True,
        "flags": "--without-gossip --without-mingle --without-heartbeat",
    }
    arq_settings = {"worker": "default", "max_jobs": 10, "defer": "_defer_until"}
    figures: list[Figure] = []
    try:
        async with redis_server(work_dir) as (port, redis_pid):
            pids = {"redis": redis_pid, "postgres": servers.pg.pid}
            env = {
                **os.environ,
                "PEER_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "PEER_REDIS_PORT": str(port),
                "PEER_DATABASE_URL": url,
                "PYTHONPATH": str(work_dir),
            }
            celery_argv = [
                "celery", "-A", "celery_tasks", "worker", "--pool", "prefork",
                "--concurrency", str(cores), "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]  # fmt: skip
            rate, elapsed, cpu = await _measure_peer(
                "celery", python, celery_argv, "celery_enqueue.py", env, work_dir, pool, n, pids
            )
            figures.append(_peer_figure("celery", rate, elapsed, cpu, n, found, celery_settings))
            await pool.execute("SELECT 1")
            rate, elapsed, cpu = await _measure_peer(
                "arq", python, ["arq", "arq_tasks.WorkerSettings"], "arq_enqueue.py",
                env, work_dir, pool, n, pids,
            )  # fmt: skip
            figures.append(_peer_figure("arq", rate, elapsed, cpu, n, found, arq_settings))
    finally:
        await pool.close()
    best = max(figures, key=lambda f: f.value or 0.0)
    ratio_ok = (own.value or 0.0) >= TARGET_RATIO * (best.value or 0.0)
    figures.append(
        Figure(
            name="e2e_runs_rate_vs_peers",
            value=own.value,
            unit="runs/s",
            target=e2e.TARGET_RATE,
            better="higher",
            baseline=best.value,
            also_required=own.also_required and ratio_ok,
            extra={
                "best_peer": best.name,
                "target_ratio": TARGET_RATIO,
                "runs": n,
                "belltower_cpu_s_per_1000_runs": own.extra.get("cpu_s_per_1000_runs"),
            },
        )
    )
    return figures


def _peer_figure(
    name: str,
    rate: float,
    elapsed: float,
    cpu: dict[str, float],
    n: int,
    found: dict[str, str],
    settings: dict[str, Any],
) -> Figure:
    return Figure(
        name=f"e2e_peer_{name}_rate",
        value=rate,
        unit="runs/s",
        target=0.0,
        better="higher",
        extra={
            "runs": n,
            "elapsed_s": elapsed,
            "settings": settings,
            "versions": found,
            "cpu_s": cpu,
            "cpu_s_per_1000_runs": {k: round(1000 * v / n, 3) for k, v in cpu.items()},
        },
    )
