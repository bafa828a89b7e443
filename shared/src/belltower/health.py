"""Each service's health and metrics endpoints: ``/livez``, ``/readyz``, ``/metrics``, and the
AsyncAPI document of its messages on ``/asyncapi.json``.

A small aiohttp server on ``BELLTOWER_HEALTH_HOST``:``BELLTOWER_HEALTH_PORT`` (defaults per
service in :data:`DEFAULT_PORTS`), next to the service's own event loop. ``/livez`` answers as
long as that loop runs; ``/readyz`` runs the service's checks (its NATS connection, its
database pool) and answers 503 naming the ones that failed, so Kubernetes stops routing to it
and a person reading the probe sees why. ``/metrics`` is prometheus_client's text format.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .errors import ConfigurationError
from .settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORTS = {
    "scheduler": 9101,
    "notifier-worker": 9102,
    "integration-worker": 9103,
    "history": 9104,
}

CHECK_TIMEOUT_S = 2.0

Check = Callable[[], Awaitable[None]]
"""Returns when the dependency is usable; raises (any exception, its text shown) when not."""


class NotReady(Exception):
    """Raised by a readiness check with the reason to show."""


def nats_check(broker: Any) -> Check:
    """Ready when the faststream broker's NATS client is connected."""

    async def check() -> None:
        try:
            nc = broker.connection
        except Exception:  # faststream raises until the broker has connected once
            nc = None
        if nc is None:
            raise NotReady("not connected yet")
        if not nc.is_connected:
            raise NotReady("reconnecting" if nc.is_reconnecting else "not connected")

    return check


def database_check(pool: Callable[[], Any], *, required: bool = True) -> Check:
    """Ready when a connection from the asyncpg pool returned by ``pool()`` answers ``SELECT 1``.

    With ``required=False`` a pool not created yet counts as ready (workers open theirs on the
    first run that needs it).
    """

    async def check() -> None:
        db = pool()
        if db is None:
            if required:
                raise NotReady("no connection pool yet")
            return
        async with db.acquire(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1")

    return check


class HealthServer:
    """Serves the endpoints of one service; ``start`` binds, ``stop`` closes."""

    def __init__(
        self,
        service: str,
        settings: Settings,
        checks: Mapping[str, Check],
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.host = settings.health_host
        port = settings.health_port
        self.port = DEFAULT_PORTS.get(service, 0) if port is None else port
        self.checks = dict(checks)
        self.before_scrape = before_scrape
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/asyncapi.json", self.asyncapi_json)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"the {self.service} health port {self.host}:{self.port} is already in use: "
                    "another instance is probably running here; set BELLTOWER_HEALTH_PORT to a free "
                    "port (0 picks one)"
                ) from None
            raise ConfigurationError(
                f"cannot serve the {self.service} health endpoints on {self.host}:{self.port} "
                f"({exc}); check BELLTOWER_HEALTH_HOST and BELLTOWER_HEALTH_PORT"
            ) from None
        self._runner = runner
        if runner.addresses:
            self.port = runner.addresses[0][1]
        log.info(
            "health endpoints ready",
            extra={
                "action": "health.ready",
                "url": f"http://{self.host}:{self.port}",
            },
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def livez(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "service": self.service})

    async def readyz(self, _: web.Request) -> web.Response:
        results = await asyncio.gather(*(self._run(check) for check in self.checks.values()))
        checks = dict(zip(self.checks, results, strict=True))
        failed = [name for name, result in checks.items() if result != "ok"]
        body: dict[str, object] = {
            "status": "not ready" if failed else "ready",
            "service": self.service,
            "checks": checks,
        }
        if failed:
            body["failed"] = failed
        return web.json_response(body, status=503 if failed else 200)

    @staticmethod
    async def _run(check: Check) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await check()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g}s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return "ok"

    async def metrics(self, _: web.Request) -> web.Response:
        if self.before_scrape is not None:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await self.before_scrape()
            except Exception as exc:  # the scrape still answers, with the last values read
                log.debug(
                    "metrics not refreshed before a scrape",
                    extra={"action": "health.refresh_failed", "error": repr(exc)},
                )
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def asyncapi_json(self, _: web.Request) -> web.Response:
        """The AsyncAPI document of Belltower's messages, the same from every service."""
        from .asyncapi import document

        return web.json_response(document())


def serve(app: Any, server: HealthServer) -> HealthServer:
    """Run ``server`` for the lifetime of the FastStream ``app``: started before the service's
    own start-up (so liveness answers while it connects), stopped after its shutdown."""
    app.on_startup(server.start)
    app.after_shutdown(server.stop)
    return server
