"""Wiring of the scheduler process: database, JetStream, dispatcher and the management API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream import FastStream
from faststream.nats import NatsMessage

from belltower import health, logs, metrics, streams, telemetry
from belltower.broker import make_broker
from belltower.db import create_pool, migrate
from belltower.rpc import serve
from belltower.subjects import api_subject

from .catalog import Catalog
from .dispatcher import Dispatcher
from .operations import ROUTES, Operations
from .runs import RunTracker
from .settings import SchedulerSettings
from .store import Store

log = logging.getLogger(__name__)


class SchedulerService:
    def __init__(self, settings: SchedulerSettings | None = None) -> None:
        self.settings = settings or SchedulerSettings()
        self.broker = make_broker(self.settings, "scheduler")
        self.dispatcher: Dispatcher | None = None
        self.runs: RunTracker | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._pool: Any = None
        self.operations: Operations | None = None
        for operation, method in ROUTES.items():
            self._route(operation, method)

    def _route(self, operation: str, method: str) -> None:
        async def handler(msg: NatsMessage) -> bytes:
            assert self.operations is not None
            target: Callable[[bytes], Awaitable[Any]] = getattr(self.operations, method)
            return await serve(target, msg.body)

        self.broker.subscriber(
            api_subject("scheduler", operation), queue="scheduler", title=f"scheduler {operation}"
        )(handler)

    def app(self) -> FastStream:
        app = FastStream(self.broker, logger=logging.getLogger("faststream.app"))
        self.health = health.serve(app, self.health_server())
        app.on_startup(self.on_startup)
        app.after_startup(self.after_startup)
        app.on_shutdown(self.on_shutdown)
        return app

    def health_server(self) -> health.HealthServer:
        return health.HealthServer(
            "scheduler",
            self.settings,
            {
                "nats": health.nats_check(self.broker),
                "database": health.database_check(lambda: self._pool),
            },
        )

    def leading(self) -> int:
        """1 while this process dispatches: its dispatch loop runs."""
        return int(self._loop_task is not None and not self._loop_task.done())

    async def on_startup(self) -> None:
        logs.configure("scheduler", self.settings)
        telemetry.setup("belltower-scheduler")
        self._pool = await create_pool(self.settings.database_url)
        applied = await migrate(self._pool, "scheduler", "belltower_scheduler")
        await self.broker.connect()
        js = self.broker.connection.jetstream()
        await streams.ensure(js, self.settings)
        store = Store(self._pool)
        self.dispatcher = Dispatcher(
            store,
            js,
            misfire_grace_s=self.settings.misfire_grace_s,
            max_batch=self.settings.dispatch_batch,
            stale_run_s=self.settings.stale_run_s,
        )
        loaded = await self.dispatcher.load()
        metrics.watch_scheduler(
            leader=lambda: {"0": self.leading()},
            jobs=lambda: len(self.dispatcher.entries) if self.dispatcher else 0,
        )
        self.runs = RunTracker(js, self.dispatcher)
        await self.runs.start()
        self.operations = Operations(store, self.dispatcher, Catalog(js))
        log.info(
            "scheduler ready",
            extra={"action": "scheduler.ready", "jobs": loaded, "migrations_applied": applied},
        )

    async def after_startup(self) -> None:
        assert self.dispatcher is not None
        self._loop_task = asyncio.create_task(self.dispatcher.run_forever(), name="dispatcher")

    async def on_shutdown(self) -> None:
        if self.runs is not None:
            await self.runs.stop()
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._pool is not None:
            await self._pool.close()


def main() -> None:
    asyncio.run(SchedulerService().app().run())
