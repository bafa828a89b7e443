"""Ports on this machine: pick a free one, tell whether one is taken, say so clearly."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from belltower.errors import ConfigurationError

LOCALHOST = "127.0.0.1"


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


def port_taken_error(what: str, host: str, ports: Sequence[int]) -> ConfigurationError:
    listed = " or ".join(f"{host}:{port}" for port in ports)
    return ConfigurationError(
        f"{what} cannot listen on {listed}: the port is already in use, perhaps by a "
        f"`make dev` still running in another shell (stop it with Ctrl-C there). "
        f"See who holds it with `ss -ltnp 'sport = :{ports[0]}'`, or choose another port."
    )
