"""Wiring of the scheduler process: database, JetStream, leases, dispatchers and the management API.

Every replica serves the management API; each dispatches only the partitions whose lease it
holds (see ``lease.py`` and ``partitions.py``). A replica alone takes every partition and loads
its jobs before it starts answering, as a single scheduler always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from faststream import FastStream

from belltower import health, heap, logs, metrics, streams, telemetry
from belltower.broker import make_broker, serve_api
from belltower.db import create_pool, migrate
from belltower.rpc import Endpoint

from .catalog import Catalog
from .clock import scheduler_clock
from .lease import LeaseKeeper
from .operations import Operations
from .partitions import Partitions
from .settings import SchedulerSettings
from .store import Store

log = logging.getLogger(__name__)


class SchedulerService:
    def __init__(self, settings: SchedulerSettings | None = None) -> None:
        self.settings = settings or SchedulerSettings()
        self.broker = make_broker(self.settings, "scheduler")
        self.partitions: Partitions | None = None
        self.leases: LeaseKeeper | None = None
        """``leases.held``: the partitions this replica dispatches now (partition -> Lease)."""
        self._loop_task: asyncio.Task[None] | None = None
        self._pool: Any = None
        self.operations: Operations | None = None
        self.api = Endpoint("scheduler", Operations)
        """Answers "unavailable" until start-up has loaded the jobs and attached the operations."""
        serve_api(self.broker, self.api)

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

    def leading(self) -> dict[str, int]:
        """Per partition, 1 while this replica holds its lease and dispatches it, else 0.

        Every partition is reported, so an alert can find one that nobody leads.
        """
        held = self.leases.held if self.leases is not None else {}
        return {str(p): int(p in held) for p in range(self.settings.scheduler_partitions)}

    def jobs_loaded(self) -> int:
        if self.partitions is None:
            return 0
        return sum(len(h.dispatcher.entries) for h in self.partitions.held.values())

    async def on_startup(self) -> None:
        logs.configure("scheduler", self.settings)
        telemetry.setup("belltower-scheduler")
        self._pool = await create_pool(self.settings.database_url)
        applied = await migrate(self._pool, "scheduler", "belltower_scheduler")
        await self.broker.connect()
        js = self.broker.connection.jetstream()
        await streams.ensure(js, self.settings)
        store = Store(self._pool)
        settings = self.settings
        self.partitions = Partitions(
            store,
            js,
            self.broker.connection,
            settings,
            clock=scheduler_clock(settings.scheduler_clock_offset_file),
        )
        await self.partitions.subscribe()
        self.leases = LeaseKeeper(
            js,
            store,
            settings,
            replica_id=settings.scheduler_replica_id,
            partitions=settings.scheduler_partitions,
            lease_s=settings.scheduler_lease_s,
            renew_s=settings.renew_s,
            on_acquired=self.partitions.acquired,
            on_lost=self.partitions.lost,
        )
        await self.leases.start()
        await self.leases.step()
        await self.partitions.loaded()
        self.operations = Operations(
            store,
            self.partitions,  # type: ignore[arg-type]
            Catalog(js),
            settings.overdue_rule,
        )
        self.operations.decision_ttl_s = settings.scheduler_decision_ttl_s
        self.api.attach(self.operations)
        metrics.watch_scheduler(leader=self.leading, jobs=self.jobs_loaded)
        log.info(
            "scheduler ready",
            extra={
                "action": "scheduler.ready",
                "replica": settings.scheduler_replica_id,
                "partitions_held": sorted(self.leases.held),
                "partitions": settings.scheduler_partitions,
                "jobs": self.jobs_loaded(),
                "migrations_applied": applied,
            },
        )

    async def after_startup(self) -> None:
        assert self.leases is not None
        self._loop_task = asyncio.create_task(self.leases.run_forever(), name="leases")

    async def on_shutdown(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self.partitions is not None:
            await self.partitions.stop()  # stop dispatching before giving the leases back
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await self.leases.release_all()
        if self._pool is not None:
            await self._pool.close()


def main() -> None:
    app = SchedulerService().app()
    heap.freeze_long_lived()
    asyncio.run(app.run())
