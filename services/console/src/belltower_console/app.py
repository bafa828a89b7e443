"""Wiring of the console process: NATS, PostgreSQL, the API, the pages and their error handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib import resources
from typing import Any

import msgspec
import nats
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from belltower import logs, natsclient
from belltower.api import FieldError, ImportResult, Job, JobDocument, JobTypeInfo, RunRecord
from belltower.db import create_pool, migrate
from belltower.errors import BelltowerError
from belltower.rpc import ApiClient

from . import api, web
from .actions import Console
from .http import api_error, validation_errors
from .settings import ConsoleSettings
from .store import Store

log = logging.getLogger(__name__)


async def bootstrap_admin(console: Console, settings: ConsoleSettings) -> str | None:
    """Create the admin named by BELLTOWER_CONSOLE_ADMIN_USER when there is no user at all."""
    if not settings.console_admin_user or not settings.console_admin_password:
        return None
    if await console.store.count_users():
        return None
    await console.add_user(
        None, None, settings.console_admin_user, settings.console_admin_password, "admin"
    )
    log.info(
        "first admin created",
        extra={"action": "console.bootstrap_admin", "user": settings.console_admin_user},
    )
    return settings.console_admin_user


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, max_size=5)
        await migrate(pool, "console", "belltower_console")
        nc = await nats.connect(
            settings.nats_url.split(","),
            max_reconnect_attempts=-1,
            connect_timeout=5,
            **natsclient.connect_options(settings, "console"),
        )
        console = Console(
            ApiClient(nc, settings.request_timeout_s),
            Store(pool),
            timedelta(hours=settings.console_session_hours),
        )
        app.state.console = console
        await bootstrap_admin(console, settings)
        log.info("console ready", extra={"action": "console.ready"})
        try:
            yield
        finally:
            await nc.drain()
            await pool.close()

    app = FastAPI(
        title="Belltower API",
        version="1",
        description=(api.__doc__ or "").strip(),
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.include_router(api.router)
    app.include_router(web.router)
    app.mount(
        "/static",
        StaticFiles(directory=str(resources.files("belltower_console").joinpath("static"))),
        name="static",
    )

    @app.exception_handler(BelltowerError)
    async def on_error(request: Request, exc: BelltowerError) -> Any:
        if request.url.path.startswith("/api/"):
            return api_error(exc)
        return web.error_page(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Any:
        errors = validation_errors(exc)
        if request.url.path.startswith("/api/"):
            return api_error(errors)
        return web.error_page(request, errors)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus scrapes the console on its own port, as the chart's ServiceMonitor expects."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Any:
        console: Console = request.app.state.console
        await console.store.count_users()
        if not console.api.nc.is_connected:
            return api_error(BelltowerError("NATS is not connected"))
        return {"status": "ready"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, components = msgspec.json.schema_components(
            [JobDocument, Job, JobTypeInfo, RunRecord, ImportResult, FieldError],
            ref_template="#/components/schemas/{name}",
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(settings: ConsoleSettings) -> None:
    import uvicorn

    logs.configure("console", settings)
    uvicorn.run(
        create_app(settings),
        host=settings.console_host,
        port=settings.console_port,
        log_config=None,
        proxy_headers=False,
    )
