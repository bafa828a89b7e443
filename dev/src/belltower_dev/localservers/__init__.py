"""Real local servers for ``make dev`` and the tests: NATS JetStream, PostgreSQL and a mail sink.

Belltower never mocks its broker or database. Development and tests run the real programs on
local ports with their own storage, and fault tests ``kill()`` and ``restart()`` them. Each
server has its module (``nats``, ``postgres``, ``smtp``); ``process`` holds the life cycle
they share and ``databases`` the SQL that creates and drops test databases.
"""

from __future__ import annotations

from .databases import create_database, database_url, drop_database
from .nats import NatsServer, find_nats_server
from .ports import LOCALHOST, free_port, port_in_use
from .postgres import PostgresServer
from .process import bound_to_parent
from .smtp import MailSink, ReceivedMail

__all__ = [
    "LOCALHOST",
    "MailSink",
    "NatsServer",
    "PostgresServer",
    "ReceivedMail",
    "bound_to_parent",
    "create_database",
    "database_url",
    "drop_database",
    "find_nats_server",
    "free_port",
    "port_in_use",
]
