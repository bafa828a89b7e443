"""How a Belltower process connects to NATS: its identity (user and password, a ``.creds`` file
or an nkey seed) and TLS, from the ``BELLTOWER_NATS_*`` settings, validated before connecting.

Raw nats-py clients (the CLI, the console) take :func:`connect_options`; faststream brokers take
the same through :func:`belltower.broker.make_broker`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigurationError
from .natsauth import inbox_prefix
from .settings import Settings


@dataclass(frozen=True)
class Credentials:
    """What this process authenticates with; ``kind`` none means anonymous (``make dev``)."""

    kind: Literal["none", "user", "creds", "nkey"]
    user: str | None = None
    password: str | None = None
    path: Path | None = None


def credentials(settings: Settings) -> Credentials:
    if settings.nats_creds is not None:
        if settings.nats_user is not None:
            raise ConfigurationError("set BELLTOWER_NATS_CREDS or BELLTOWER_NATS_USER, not both")
        if not settings.nats_creds.is_file():
            raise ConfigurationError(
                f"BELLTOWER_NATS_CREDS={settings.nats_creds}: no such file (a .creds file or "
                "an nkey seed file is expected)"
            )
        text = settings.nats_creds.read_text(errors="replace")
        kind: Literal["creds", "nkey"] = "creds" if "BEGIN NATS USER JWT" in text else "nkey"
        return Credentials(kind, path=settings.nats_creds)
    if settings.nats_user is not None:
        if settings.nats_password is None:
            raise ConfigurationError(
                f"BELLTOWER_NATS_USER={settings.nats_user} needs BELLTOWER_NATS_PASSWORD"
            )
        return Credentials(
            "user", user=settings.nats_user, password=settings.nats_password.get_secret_value()
        )
    return Credentials("none")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A context that verifies the server with ``BELLTOWER_NATS_TLS_CA`` (and presents the
    client certificate when one is set); None when no TLS setting is given."""
    if settings.nats_tls_ca is None and settings.nats_tls_cert is None:
        return None
    if (settings.nats_tls_cert is None) != (settings.nats_tls_key is None):
        raise ConfigurationError(
            "BELLTOWER_NATS_TLS_CERT and BELLTOWER_NATS_TLS_KEY go together: set both for a "
            "client certificate, or neither"
        )
    for name, path in (
        ("BELLTOWER_NATS_TLS_CA", settings.nats_tls_ca),
        ("BELLTOWER_NATS_TLS_CERT", settings.nats_tls_cert),
        ("BELLTOWER_NATS_TLS_KEY", settings.nats_tls_key),
    ):
        if path is not None and not path.is_file():
            raise ConfigurationError(f"{name}={path}: no such file (a PEM file is expected)")
    context = ssl.create_default_context(
        cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None
    )
    if settings.nats_tls_cert is not None and settings.nats_tls_key is not None:
        context.load_cert_chain(str(settings.nats_tls_cert), str(settings.nats_tls_key))
    return context


def connect_options(settings: Settings, role: str) -> dict[str, Any]:
    """Keyword arguments of ``nats.connect`` for a process of ``role``."""
    found = credentials(settings)
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(role)}
    if found.kind == "user":
        options.update(user=found.user, password=found.password)
    elif found.kind == "creds":
        options["user_credentials"] = str(found.path)
    elif found.kind == "nkey":
        options["nkeys_seed"] = str(found.path)
    context = tls_context(settings)
    if context is not None:
        options["tls"] = context
    return options
