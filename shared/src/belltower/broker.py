"""The one way Belltower processes connect to NATS through faststream.

Reconnects forever (a broker restart must not end a service), and faststream's own logs go
through Belltower's logging: its per-message access lines at DEBUG, its warnings as they are.
Each service connects as its own NATS identity (:mod:`belltower.natsauth`): ``name`` is its role.
"""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker

from .natsauth import connect_security, inbox_prefix
from .settings import Settings


def make_broker(settings: Settings, name: str) -> NatsBroker:
    return NatsBroker(
        settings.nats_url.split(","),
        name=f"belltower-{name}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        security=connect_security(settings),
        inbox_prefix=inbox_prefix(name),
        logger=logging.getLogger(f"faststream.{name}"),
        log_level=logging.DEBUG,
    )
