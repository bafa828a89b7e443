"""Settings an admin changes while Belltower runs (the console's Settings page), kept in NATS KV.

Every field is optional: unset, the service's own ``BELLTOWER_*`` environment default applies.
Services that use a setting follow the bucket (see :class:`Follower`), so a change takes effect
within seconds on every replica without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

BUCKET = "belltower_settings"
KEY = "site"


class SiteSettings(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """The run-time settings; ``None`` means "as the environment says"."""

    result_mail_only_failures: bool | None = None
    """Result e-mails only for unsuccessful runs, unless a job says otherwise (the seeds'
    "Scheduled Job email unsuccessful notifications ONLY" preference)."""


_decode = msgspec.json.Decoder(SiteSettings).decode


async def bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        from . import streams  # it imports this module for the bucket's declaration

        if streams.auth_required(js):  # only the provisioner may create it: say so, don't hang
            raise streams.not_provisioned(f"bucket {BUCKET}") from None
        return await js.create_key_value(
            KeyValueConfig(bucket=BUCKET, history=10, replicas=replicas)
        )


async def load(js: JetStreamContext, replicas: int = 1) -> SiteSettings:
    kv = await bucket(js, replicas)
    try:
        entry = await kv.get(KEY)
    except KeyNotFoundError:
        return SiteSettings()
    return _decode(entry.value) if entry.value else SiteSettings()


async def save(js: JetStreamContext, settings: SiteSettings, replicas: int = 1) -> None:
    kv = await bucket(js, replicas)
    await kv.put(KEY, msgspec.json.encode(settings))


class Follower:
    """Reads the settings every ``poll_s`` and calls ``on_change`` when they differ.

    Polling (rather than a KV watch) keeps working across NATS reconnects without re-arming.
    """

    def __init__(
        self,
        js: JetStreamContext,
        on_change: Callable[[SiteSettings], None],
        *,
        poll_s: float = 3.0,
        replicas: int = 1,
    ) -> None:
        self.js = js
        self.on_change = on_change
        self.poll_s = poll_s
        self.replicas = replicas
        self.current: SiteSettings | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="site-settings")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        try:
            settings = await load(self.js, self.replicas)
        except Exception as exc:  # NATS away: keep what we had, try again next time
            log.warning(
                "site settings not readable; keeping the current ones",
                extra={"action": "settings.unreadable", "error": str(exc)},
            )
            return
        if settings != self.current:
            self.current = settings
            self.on_change(settings)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.refresh()
