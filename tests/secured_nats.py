"""A private nats-server with Belltower's users and permissions (and TLS, when asked)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from belltower import natsauth
from belltower_dev.localservers import NatsServer

STREAMS_COMMAND = Path(sys.executable).parent / "belltower-streams"


def provision(
    server: NatsServer,
    identity: natsauth.Identity | Mapping[str, str],
    *,
    command: str = "apply",
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``belltower-streams`` as an operator would, with ``identity``'s credentials (or
    these ``BELLTOWER_NATS_*`` variables)."""
    credentials = identity.env() if isinstance(identity, natsauth.Identity) else dict(identity)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
    env |= {"BELLTOWER_NATS_URL": server.url, **credentials, **(extra_env or {})}
    return subprocess.run(
        [str(STREAMS_COMMAND), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def secured_nats(
    directory: Path, tls: natsauth.ServerTLS | None = None, *, provisioned: bool = True
) -> Iterator[tuple[NatsServer, dict[natsauth.Role, natsauth.Identity]]]:
    """The server and each role's identity; the server's log says what it refused.

    ``provisioned``: the streams and buckets are created first by ``belltower-streams apply``
    as the provisioner, as ``make dev`` and the chart's hook Job do (the services may not).
    """
    identities = natsauth.generate_identities()
    config = directory / "nats-auth.conf"
    config.write_text(natsauth.server_config(identities, tls=tls))
    with NatsServer(store_dir=directory / "nats", args=("-c", str(config))) as server:
        if provisioned:
            extra = {"BELLTOWER_NATS_TLS_CA": str(tls.ca)} if tls and tls.ca else {}
            done = provision(server, identities["provisioner"], extra_env=extra)
            assert done.returncode == 0, done.stdout + done.stderr
        yield server, identities


_VIOLATION = re.compile(r"\b(Publish|Subscription|Permissions) Violation\b")
"""How nats-server logs a refused publish or subscription (2.10+: ``Publish Violation``)."""


@contextmanager
def operator_nats(directory: Path) -> Iterator[tuple[NatsServer, dict[natsauth.Role, Path]]]:
    """A nats-server in operator mode (decentralized JWT auth) and a ``.creds`` file per role,
    the streams provisioned with the provisioner's."""
    from tests.helpers.natsjwt import Operator

    operator = Operator()
    config = directory / "operator.conf"
    config.write_text(operator.server_config())
    creds = {role: operator.write_creds(directory, role) for role in natsauth.ROLES}
    with NatsServer(store_dir=directory / "nats", args=("-c", str(config))) as server:
        done = provision(server, {"BELLTOWER_NATS_CREDS": str(creds["provisioner"])})
        assert done.returncode == 0, done.stdout + done.stderr
        yield server, creds


def violations(server: NatsServer) -> list[str]:
    """The permission violations the server logged."""
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return [line for line in text.splitlines() if _VIOLATION.search(line)]
