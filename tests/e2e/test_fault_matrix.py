"""The fault matrix (experiment)."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.js.errors import NotFoundError

from belltower.subjects import DUE_STREAM, worker_consumer
from tests.helpers.faults import assert_every_second_once, query, wait_until

pytestmark = pytest.mark.slow


def consumer_exists(url: str, name: str) -> bool:
    async def go() -> bool:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().consumer_info(DUE_STREAM, name)
            return True
        except NotFoundError:
            return False
        finally:
            await nc.close()

    return asyncio.run(go())


def delete_consumer(url: str, name: str) -> None:
    async def go() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_consumer(DUE_STREAM, name)
        finally:
            await nc.close()

    asyncio.run(go())


def test_consumer_deleted(stack, cli, database_url, fresh_nats) -> None:
    job = cli.json("jobs", "create", "--type", "system.canary", "--title", "Every second", "--every", "1s")
    time.sleep(3)
    name = worker_consumer("notifier")
    assert consumer_exists(fresh_nats.url, name)
    delete_consumer(fresh_nats.url, name)
    time.sleep(8)
    print("exists again:", consumer_exists(fresh_nats.url, name))
    print(stack.log("notifier-worker")[-3000:])
    cli.run("jobs", "pause", job["id"])
    assert_every_second_once(database_url, job["id"])
