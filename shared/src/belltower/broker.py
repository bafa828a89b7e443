"""The one way Belltower processes connect to NATS through faststream.

Reconnects forever (a broker restart must not end a service), and faststream's own logs go
through Belltower's logging: its per-message access lines at DEBUG, its warnings as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream.nats import NatsBroker, NatsMessage

from .operations import Operation
from .rpc import Endpoint
from .settings import Settings


def make_broker(settings: Settings, name: str) -> NatsBroker:
    return NatsBroker(
        settings.nats_url.split(","),
        name=f"belltower-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
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
