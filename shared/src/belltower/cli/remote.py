"""Reaching the services: one request-reply session per command, and who is asking from where."""

from __future__ import annotations

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import natsauth, natsclient
from ..errors import BelltowerError
from ..rpc import ApiClient
from ..settings import get_settings
from .output import fail

T = TypeVar("T")


def call(nats_url: str | None, fn: Callable[[ApiClient], Awaitable[T]]) -> T:
    settings = get_settings()
    if nats_url:
        settings = settings.model_copy(update={"nats_url": nats_url})
    # Beside `make dev` with no credentials set, the CLI uses the dev stack's own CLI identity.
    settings = natsauth.with_dev_identity(settings, "cli")

    async def go() -> T:
        client = await ApiClient.connect(
            settings.nats_url,
            settings.request_timeout_s,
            natsclient.connect_options(settings, "cli"),
        )
        try:
            return await fn(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except BelltowerError as exc:
        fail(exc)


def who() -> str:
    """The OS user asking, as run-now and pause records show it."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user} (cli)"


def where(nats_url: str | None) -> str:
    """This machine's name and the address it reaches NATS from (no packet is sent)."""
    host = socket.gethostname()
    url = nats_url or get_settings().nats_url
    target = url.split("//", 1)[-1].split(",", 1)[0].rsplit("@", 1)[-1]
    name, _, port = target.rpartition(":") if ":" in target else (target, "", "4222")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((name or "127.0.0.1", int(port or 4222)))
            return f"{host} ({probe.getsockname()[0]})"
    except (OSError, ValueError):
        return host
