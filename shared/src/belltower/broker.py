"""The one way Belltower processes connect to NATS through faststream.

Reconnects forever (a broker restart must not end a service), and faststream's own logs go
through Belltower's logging: its per-message access lines at DEBUG, its warnings as they are.
Each service connects as its own NATS identity (:mod:`belltower.natsauth`): ``name`` is its role.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream.nats import NatsBroker, NatsMessage
from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity, NatsUserPassword

from .natsauth import inbox_prefix
from .natsclient import credentials, tls_context
from .operations import Operation
from .rpc import Endpoint
from .settings import Settings


def security(settings: Settings) -> NatsSecurity | None:
    """The faststream form of this process's NATS credentials and TLS."""
    found = credentials(settings)
    context = tls_context(settings)
    if found.kind == "user":
        assert found.user is not None and found.password is not None
        return NatsUserPassword(found.user, found.password, ssl_context=context)
    if found.kind == "creds":
        assert found.path is not None
        return NatsCredentials.from_file(found.path, ssl_context=context)
    if found.kind == "nkey":
        assert found.path is not None
        return NatsNKey.from_file(found.path, ssl_context=context)
    return NatsSecurity(ssl_context=context) if context is not None else None


def make_broker(settings: Settings, name: str) -> NatsBroker:
    return NatsBroker(
        settings.nats_url.split(","),
        name=f"belltower-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        security=security(settings),
        inbox_prefix=inbox_prefix(name),
        logger=logging.getLogger(f"faststream.{name}"),
        log_level=logging.DEBUG,
    )


def serve_api(broker: NatsBroker, endpoint: Endpoint[Any]) -> None:
    """Subscribe each of the endpoint's operations in the service's queue group, so the
    replicas share the requests (kept out of :mod:`belltower.rpc`: the CLI needs no faststream)."""
    for op in endpoint.operations:
        _serve(broker, endpoint, op)


def _serve(broker: NatsBroker, endpoint: Endpoint[Any], op: Operation[Any, Any]) -> None:
    async def handler(msg: NatsMessage) -> bytes:  # faststream reads this annotation
        return await endpoint.answer(op, msg.body)

    service = endpoint.service
    broker.subscriber(op.subject, queue=service, title=f"{service} {op.name}")(handler)
