"""Wiring of the console process: NATS, PostgreSQL, the API, the pages and their error handling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib import resources
from typing import Any

import nats
import swagger_ui_bundle
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from nats.errors import MaxPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from belltower import logs, natsclient
from belltower.db import create_pool, migrate
from belltower.errors import BelltowerError, NotFound
from belltower.rpc import ApiClient

from . import admin_pages, api, calendar_pages, contract, oneroster, requested_routes, web
from .actions import Console
from .http import (
    INTERNAL_DETAIL,
    api_error,
    console_of,
    problem,
    trusted_networks,
    validation_errors,
)
from .limits import RequestLimits
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
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.include_router(api.router)
    app.include_router(requested_routes.api_router)
    app.include_router(oneroster.router)
    app.include_router(requested_routes.pages)
    app.include_router(web.router)
    app.include_router(admin_pages.router)
    app.include_router(calendar_pages.router)
    app.mount(
        "/api/v1/docs/assets",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="swagger-ui",
    )

    @app.get("/api/v1/docs", include_in_schema=False)
    async def docs() -> Response:
        """Swagger UI from the console's own files: no CDN, so it works in an air-gapped network."""
        return get_swagger_ui_html(
            openapi_url="/api/v1/openapi.json",
            title="Belltower API",
            swagger_js_url="/api/v1/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/api/v1/docs/assets/swagger-ui.css",
            swagger_favicon_url="/api/v1/docs/assets/favicon-32x32.png",
        )

    app.mount(
        "/static",
        StaticFiles(directory=str(resources.files("belltower_console").joinpath("static"))),
        name="static",
    )

    app.state.trusted_proxies = trusted_networks(settings.console_trusted_proxies)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.console_max_body_bytes,
        max_import_bytes=settings.console_max_import_bytes,
    )

    _handle_errors(app)
    _serve_probes(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        contract.improve(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _handle_errors(app: FastAPI) -> None:
    """Every failure answered in one shape: a problem document for the API, a page for people."""

    @app.exception_handler(BelltowerError)
    @oneroster.answered_in_binding
    async def on_error(request: Request, exc: BelltowerError) -> Any:
        if request.url.path.startswith("/api/"):
            return api_error(exc)
        return web.error_page(request, exc)

    @app.exception_handler(StarletteHTTPException)
    @oneroster.answered_in_binding
    async def on_http(request: Request, exc: StarletteHTTPException) -> Any:
        if request.url.path.startswith("/api/") or exc.status_code != 404:
            return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        return web.error_page(request, NotFound(f"no page {request.url.path}"))

    @app.exception_handler(MaxPayloadError)
    @oneroster.answered_in_binding
    async def on_too_large(request: Request, exc: MaxPayloadError) -> Any:
        return problem(
            413,
            f"the request is larger than the message bus accepts "
            f"({console_of(request).api.nc.max_payload} bytes)",
        )

    @app.exception_handler(Exception)
    @oneroster.answered_in_binding
    async def on_unexpected(request: Request, exc: Exception) -> Any:
        """Anything unforeseen: logged with its traceback, answered without internals."""
        log.error(
            "unexpected error",
            exc_info=exc,
            extra={"action": "console.error", "path": request.url.path},
        )
        return problem(500, INTERNAL_DETAIL)

    @app.exception_handler(RequestValidationError)
    @oneroster.answered_in_binding
    async def on_invalid(request: Request, exc: RequestValidationError) -> Any:
        errors = validation_errors(exc)
        if request.url.path.startswith("/api/"):
            return api_error(errors)
        return web.error_page(request, errors)


def _serve_probes(app: FastAPI) -> None:
    """Metrics, liveness and readiness on the console's own port."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus scrapes the console on its own port, as the chart's ServiceMonitor expects."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Any:
        """200 when PostgreSQL and NATS answer; otherwise 503 naming each failed check."""
        console: Console = request.app.state.console
        failed = []
        try:
            await asyncio.wait_for(console.store.count_users(), 5)
        except Exception:
            failed.append("database")
        if not console.api.nc.is_connected:
            failed.append("nats")
        if failed:
            return problem(503, "not ready: " + ", ".join(failed) + " failed")
        return {"status": "ready"}


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
