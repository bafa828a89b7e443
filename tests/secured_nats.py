"""A private nats-server with Belltower's users and permissions (and TLS, when asked)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from belltower import natsauth
from belltower_dev.localservers import NatsServer


@contextmanager
def secured_nats(
    directory: Path, tls: natsauth.ServerTLS | None = None
) -> Iterator[tuple[NatsServer, dict[natsauth.Role, natsauth.Identity]]]:
    """The server and each role's identity; the server's log says what it refused."""
    identities = natsauth.generate_identities()
    config = directory / "nats-auth.conf"
    config.write_text(natsauth.server_config(identities, tls=tls))
    with NatsServer(store_dir=directory / "nats", args=("-c", str(config))) as server:
        yield server, identities


def violations(server: NatsServer) -> list[str]:
    """The permission violations the server logged."""
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return [line for line in text.splitlines() if "Permissions Violation" in line]
