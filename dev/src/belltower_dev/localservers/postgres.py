"""A private PostgreSQL cluster run from the machine's own postgres and initdb programs."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from belltower.errors import ConfigurationError

from .databases import ensure_database
from .ports import LOCALHOST
from .process import POLL_S, STOP_TIMEOUT_S, ServerProcess

_UNIX_SOCKET_PATH_MAX = 100


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


class PostgresServer(ServerProcess):
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
        ensure_database(self.url(), name, owner)
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
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(POLL_S)
            return
        super().kill()

    def __repr__(self) -> str:
        return (
            f"PostgresServer(url={self.url()!r}, data_dir={str(self.data_dir)!r}, pid={self.pid})"
        )
