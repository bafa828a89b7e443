"""The worker tests' job types (test.sleep, test.crash), the worker fixture and due/finished messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from belltower.errors import JobFailed
from belltower.events import DueOccurrence, RunFinished, due_encoder, run_id_for, utcnow
from belltower.jobtypes import JobContext, Registry
from belltower.subjects import RUNS_STREAM, due_subject
from belltower.worker import Worker
from tests.support import stream_messages


class SleepParams(msgspec.Struct):
    seconds: float = 0.0
    fail: bool = False


calls: list[str] = []


def make_registry() -> Registry:
    registry = Registry()

    @registry.job_type("test.sleep", pool="notifier", title="Sleep", params=SleepParams)
    async def sleep(ctx: JobContext, params: SleepParams) -> None:
        calls.append(ctx.occurrence_id)
        await ctx.progress(0, 1, "sleeping")
        await asyncio.sleep(params.seconds)
        if params.fail:
            raise JobFailed("asked to fail")
        ctx.output.line(f"slept {params.seconds}s")

    @registry.job_type("test.crash", pool="notifier", title="Crash")
    async def crash(ctx: JobContext, params: object) -> None:
        raise ZeroDivisionError("division by zero in a handler")

    return registry


@pytest.fixture
async def worker(settings, nc) -> AsyncIterator[Worker]:
    calls.clear()
    w = Worker("notifier", make_registry(), settings)
    await w.on_startup()
    await w.broker.start()
    await w.start_consuming()
    yield w
    await w.on_shutdown()
    await w.broker.stop()


def due(job_type: str = "test.sleep", **params: object) -> DueOccurrence:
    occ = str(uuid.uuid4())
    now = utcnow()
    return DueOccurrence(
        occurrence_id=occ, run_id=run_id_for(occ), job_id=str(uuid.uuid4()), job_type=job_type, job_title="A job",
        pool="notifier", params=dict(params), scheduled_for=now, dispatched_at=now,
    )  # fmt: skip


async def publish(nc, message: DueOccurrence, msg_id: str | None = None) -> None:
    await nc.jetstream().publish(
        due_subject("notifier", message.job_type), due_encoder.encode(message),
        headers={"Nats-Msg-Id": msg_id or message.occurrence_id},
    )  # fmt: skip


async def finished_events(nc, timeout: float = 10.0, expect: int = 1) -> list[RunFinished]:
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while True:
        events = [
            msgspec.json.decode(m.data, type=RunFinished)
            for m in await stream_messages(js, RUNS_STREAM, "belltower.run.finished.")
        ]
        if len(events) >= expect or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.1)
