"""The life cycle every local server child process shares: start, readiness, stop, kill, restart.

Every server started here dies with the process that started it (process exit, garbage
collection, and on Linux a parent-death signal), so no orphan outlives a crashed test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from belltower.errors import Unavailable

from .ports import free_port, port_taken_error

POLL_S = 0.02
STOP_TIMEOUT_S = 10.0
_LOG_TAIL_LINES = 25
_PORT_ATTEMPTS = 3


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


class ServerProcess:
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
        self._reaper = weakref.finalize(self, _reap, self._proc, self.stop_signal, STOP_TIMEOUT_S)

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
        raise port_taken_error(self.name, self.host, self._ports())

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
                    time.sleep(POLL_S)
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
                    await asyncio.sleep(POLL_S)
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

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
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

    async def astop(self, timeout: float = STOP_TIMEOUT_S) -> None:
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
                await asyncio.sleep(POLL_S)
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
