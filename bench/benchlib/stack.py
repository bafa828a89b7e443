"""The real parts a benchmark runs against: servers, databases and service processes.

Every figure is measured against real programs, as in production: a private ``nats-server``
with JetStream, a private PostgreSQL cluster and the services' own console scripts as separate
processes. Each benchmark gets a fresh NATS server and a fresh database, so one benchmark's
streams, consumers and tables cannot slow down or flatter the next. Whatever is started here
is stopped by the context manager that started it, and servers and service processes also die
with this process (parent-death signal), so even an interrupted run leaves nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from belltower import streams
from belltower.db import migrate
from belltower.settings import Settings
from belltower_dev.localservers import NatsServer, PostgresServer, drop_database, free_port

DB_OWNER = "belltower"
"""The role the services connect as, like ``make dev``'s database."""

_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_CHARS = 3000


def log(message: str) -> None:
    """Progress for the human watching; stdout carries only the JSON figures."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settings_for(nats_url: str, database_url: str) -> Settings:
    """Service settings pointing at the benchmark's servers, defaults for everything else."""
    return Settings(nats_url=nats_url, database_url=database_url, log_level="WARNING")


@dataclass
class Servers:
    """The PostgreSQL cluster shared by all benchmarks (each gets its own database in it)."""

    pg: PostgresServer
    work_dir: Path

    def database(self, name: str) -> str:
        """A new, empty database owned by the services' role; returns its URL."""
        drop_database(self.pg.url(), name)
        return self.pg.ensure_database(name, owner=DB_OWNER)


@contextlib.asynccontextmanager
async def fresh_nats() -> AsyncIterator[NatsServer]:
    """A private JetStream server with its own temporary store, removed afterwards."""
    server = NatsServer()
    async with server:
        yield server


@contextlib.asynccontextmanager
async def jetstream(
    url: str, settings: Settings
) -> AsyncIterator[tuple[NatsClient, JetStreamContext]]:
    """A connection made the way the services make theirs (a faststream ``NatsBroker``).

    The streams and buckets are declared with the services' own ``streams.ensure``, so stream
    configuration is exactly what production uses.
    """
    broker = NatsBroker(url.split(","), name="belltower-bench")
    await broker.connect()
    try:
        js = broker.connection.jetstream()
        await streams.ensure(js, settings)
        yield broker.connection, js
    finally:
        await broker.stop()


async def migrated_pool(url: str, *schemas: tuple[str, str], max_size: int = 4) -> asyncpg.Pool:
    """A pool to ``url`` after applying the given services' migrations, as their start-up would."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size)
    assert pool is not None
    for schema, package in schemas:
        await migrate(pool, schema, package)
    return pool


def _pdeathsig_prefix() -> list[str]:
    """Have the kernel kill a service if this process dies, so no orphan survives a crash.

    Linux sends it when the spawning *thread* exits, so only the main thread may use it.
    """
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def cpu_seconds(pid: int | None) -> float:
    """CPU time used so far by a process and all its children, the exited ones included.

    PostgreSQL does its work in forked backends; counting reaped and live children is what
    makes its figure comparable with a single-process service's.
    """
    if pid is None:
        return 0.0
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                ct = child.cpu_times()
                total += ct.user + ct.system
        return total
    except psutil.Error:
        return 0.0


class Service:
    """One Belltower service run through its console script, as a deployment runs it."""

    def __init__(
        self, script: str, env: Mapping[str, str], log_dir: Path, name: str | None = None
    ) -> None:
        self.script = script
        self.name = name or script
        self.binary = Path(sys.executable).parent / script
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} not found: run `uv sync --all-packages` first")
        # A free health port per process: several workers run side by side here.
        self.env = {**os.environ, "BELLTOWER_HEALTH_PORT": str(free_port()), **env}
        self.log_path = log_dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                [*_pdeathsig_prefix(), str(self.binary)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.log_path.parent,
                start_new_session=True,
            )
        return self

    def check_alive(self) -> None:
        """Raise with the end of its log if the service has exited: a figure without it is void."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.script} exited with code {self.proc.returncode}; its log ends with:\n{self.log_tail()}"
            )

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def rss(self) -> int:
        assert self.pid is not None
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    async def stop(self) -> None:
        """SIGTERM (the services shut down cleanly on it), SIGKILL if that takes too long."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def inherited_overrides() -> dict[str, str]:
    """``BELLTOWER_*`` settings the services inherit from the caller's environment.

    They are passed on on purpose (``BELLTOWER_WORKER_CONCURRENCY=256 make bench`` is how to
    try a setting), and reported with the figures so a result is never read without them.
    """
    own = {
        "BELLTOWER_NATS_URL",
        "BELLTOWER_DATABASE_URL",
        "BELLTOWER_LOG_LEVEL",
        "BELLTOWER_LOG_JSON",
        "BELLTOWER_BATCH_FOLDER",
    }
    return {k: v for k, v in os.environ.items() if k.startswith("BELLTOWER_") and k not in own}


def service_env(nats_url: str, database_url: str, work_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a deployment gives every service; logs at WARNING so logging costs little."""
    batch = work_dir / "batch"
    batch.mkdir(parents=True, exist_ok=True)
    env = {
        "BELLTOWER_NATS_URL": nats_url,
        "BELLTOWER_DATABASE_URL": database_url,
        "BELLTOWER_LOG_LEVEL": "WARNING",
        "BELLTOWER_LOG_JSON": "true",
        "BELLTOWER_BATCH_FOLDER": str(batch),
    }
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def services(*running: Service) -> AsyncIterator[tuple[Service, ...]]:
    """Start the services and stop every one of them afterwards, whatever happens in between."""
    started: list[Service] = []
    try:
        for service in running:
            started.append(service.start())
        yield running
    finally:
        await asyncio.gather(*(s.stop() for s in started), return_exceptions=True)


class FinishedRuns:
    """A ``wait_until`` check: true once history holds ``target`` finished runs.

    ``count`` keeps the last number seen, so an incomplete run can still be reported.
    """

    def __init__(self, pool: Any, target: int) -> None:
        self.pool = pool
        self.target = target
        self.count = 0

    async def __call__(self) -> bool:
        self.count = await self.pool.fetchval(
            "SELECT count(*) FROM history.runs WHERE finished_at IS NOT NULL"
        )
        return bool(self.count >= self.target)


async def wait_until(
    what: str,
    check: Callable[[], Awaitable[bool]],
    timeout: float,
    *watch: Service,
    interval: float = 0.02,
) -> float:
    """Poll the async ``check`` until it returns true; returns the monotonic time it did.

    Watched services are checked on every round, so a crashed service fails the benchmark
    at once with its log instead of after the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        for service in watch:
            service.check_alive()
        if await check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        await asyncio.sleep(interval)
