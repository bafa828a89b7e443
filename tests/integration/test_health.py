"""Health endpoints against real NATS and PostgreSQL: liveness, readiness naming what failed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from belltower.errors import ConfigurationError
from belltower.health import HealthServer
from belltower.settings import Settings
from belltower_history.app import HistoryService


async def get(port: int, path: str) -> tuple[int, dict | str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


@pytest.fixture
async def history(settings: Settings, nc):
    service = HistoryService(settings.model_copy(update={"health_port": 0}))
    server = service.health_server()
    await server.start()
    yield service, server
    await server.stop()
    await service.on_shutdown()
    await service.broker.stop()


async def test_readiness_follows_nats_and_the_database(history, fresh_nats) -> None:
    service, server = history
    assert await get(server.port, "/livez") == (200, {"status": "alive", "service": "history"})
    status, body = await get(server.port, "/readyz")
    assert status == 503 and set(body["failed"]) == {"nats", "database"}

    await service.on_startup()
    status, body = await get(server.port, "/readyz")
    assert (status, body["checks"]) == (200, {"nats": "ok", "database": "ok"})

    await fresh_nats.astop()
    try:
        status, body = await get(server.port, "/readyz")
        assert status == 503 and body["failed"] == ["nats"], body
        assert body["checks"]["database"] == "ok"
        assert (await get(server.port, "/livez"))[0] == 200
    finally:
        await fresh_nats.astart()
    deadline = time.monotonic() + 15
    while (status := (await get(server.port, "/readyz"))[0]) != 200:
        assert time.monotonic() < deadline, "not ready again after NATS came back"
        await asyncio.sleep(0.2)


async def test_metrics_are_served_in_prometheus_text_format(history) -> None:
    _, server = history
    status, text = await get(server.port, "/metrics")
    assert status == 200 and "# TYPE python_info gauge" in text


async def test_a_taken_port_is_refused_with_the_variable_to_set(settings, history) -> None:
    _, server = history
    clash = HealthServer("history", settings.model_copy(update={"health_port": server.port}), {})
    with pytest.raises(ConfigurationError, match="BELLTOWER_HEALTH_PORT"):
        await clash.start()
