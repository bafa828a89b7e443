"""One run followed across the real services, in this process: its trace and the completion
event integrators receive, and the AsyncAPI document that describes it.

The scheduler, a notifier worker and history run in-process on real NATS, PostgreSQL and SMTP,
so an in-memory span exporter sees every span.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from belltower import asyncapi, telemetry
from belltower import operations as ops
from belltower.api import JobSpec, RunNowRequest, RunNowResult, RunRecord, RunRef
from belltower.errors import JobFailed, NotFound
from belltower.health import HealthServer
from belltower.jobtypes import JobContext, Registry
from belltower.rpc import ApiClient
from belltower.schedule import Every, Schedule
from belltower.settings import Settings
from belltower.worker import Worker
from belltower_history.app import HistoryService
from belltower_scheduler.app import SchedulerService
from belltower_scheduler.settings import SchedulerSettings
from tests.support import stream_messages

pytestmark = pytest.mark.slow


class TracedParams(msgspec.Struct):
    url: str
    fail: bool = False


def traced_registry() -> Registry:
    registry = Registry()

    @registry.job_type("test.traced", pool="notifier", title="Traced", params=TracedParams)
    async def traced(ctx: JobContext, params: TracedParams) -> None:
        pool = await ctx.db.pool()
        ctx.output.line(f"database says {await pool.fetchval('SELECT 40 + 2')}")
        await ctx.mailer.send(["office@school.test"], "traced", "a traced run")
        async with httpx.AsyncClient() as client:
            (await client.get(params.url)).raise_for_status()
        if params.fail:
            raise JobFailed("asked to fail")

    return registry


@dataclass
class Services:
    scheduler: SchedulerService
    worker: Worker
    history: HistoryService
    api: ApiClient
    http_url: str
    """An HTTP endpoint the traced job calls: a health server of this test's own."""

    async def run_now(self, fail: bool = False) -> tuple[RunNowResult, RunRecord]:
        """Define a paused job, run it now, and wait until history holds its finished run."""
        job = await self.api.call(
            ops.JOBS_CREATE,
            JobSpec(
                type="test.traced",
                title="Traced job",
                schedule=Schedule(rule=Every(seconds=3600)),
                params={"fail": fail, "url": self.http_url},
                paused=True,
            ),
        )
        started = await self.api.call(ops.JOBS_RUN_NOW, RunNowRequest(id=job.id))
        deadline = time.monotonic() + 20
        while True:
            try:
                record = await self.api.call(ops.RUNS_GET, RunRef(run_id=started.run_id))
                if record.finished_at is not None:
                    return started, record
            except NotFound:
                pass
            assert time.monotonic() < deadline, "the run did not reach history"
            await asyncio.sleep(0.1)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = telemetry.use(provider)
    yield exporter
    telemetry.use(previous)


@pytest.fixture
async def services(settings: Settings, mail_sink, nc, spans) -> AsyncIterator[Services]:
    common = settings.model_dump() | {"smtp_host": mail_sink.host, "smtp_port": mail_sink.port}
    history = HistoryService(Settings(**common), batch_size=50)
    await history.on_startup()
    await history.broker.start()
    await history.start_consuming()
    worker = Worker("notifier", traced_registry(), Settings(**common))
    await worker.on_startup()
    await worker.broker.start()
    await worker.start_consuming()
    scheduler = SchedulerService(SchedulerSettings(**common))
    await scheduler.on_startup()
    await scheduler.broker.start()
    await scheduler.after_startup()
    for service in (history, worker, scheduler):  # their subscriptions reach the server first
        await service.broker.connection.flush()
    http = HealthServer("test", Settings(**common | {"health_port": 0}), {})
    await http.start()
    try:
        yield Services(
            scheduler,
            worker,
            history,
            ApiClient(nc, timeout=10),
            f"http://127.0.0.1:{http.port}/livez",
        )
    finally:
        await http.stop()
        await scheduler.on_shutdown()
        await scheduler.broker.stop()
        await worker.on_shutdown()
        await worker.broker.stop()
        await history.on_shutdown()
        await history.broker.stop()


def _trace_of(spans: list[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context.trace_id == trace_id]


def _one(spans: list[ReadableSpan], **match: Any) -> ReadableSpan:
    found = [
        s
        for s in spans
        if all(
            (getattr(s, k) == v) if k in ("name", "kind") else s.attributes.get(k) == v
            for k, v in match.items()
        )
    ]
    assert len(found) == 1, f"{match}: {[(s.name, s.kind, dict(s.attributes)) for s in spans]}"
    return found[0]


async def test_one_trace_from_dispatch_to_the_handlers_sql_smtp_and_http_and_its_id_in_history(
    services: Services, spans: InMemorySpanExporter, mail_sink
) -> None:
    started, record = await services.run_now()
    assert record.status == "succeeded" and "database says 42" in record.output_text
    all_spans = list(spans.get_finished_spans())

    producer = _one(
        all_spans, kind=SpanKind.PRODUCER, **{"messaging.message.id": started.occurrence_id}
    )
    assert producer.name == "send belltower.due.notifier.test.traced"
    assert producer.parent is None, "each occurrence starts its own trace"
    assert producer.attributes["messaging.system"] == "nats"
    assert producer.attributes["messaging.operation.type"] == "send"
    assert producer.attributes["messaging.destination.name"] == "belltower.due.notifier.test.traced"

    assert record.trace_id == format(producer.context.trace_id, "032x")
    in_trace = _trace_of(all_spans, producer.context.trace_id)

    consumer = _one(
        in_trace,
        kind=SpanKind.CONSUMER,
        name=f"process {producer.attributes['messaging.destination.name']}",
    )
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes["messaging.operation.type"] == "process"
    assert consumer.attributes["messaging.message.id"] == started.occurrence_id
    assert consumer.attributes["messaging.consumer.group.name"] == "notifier-worker"

    run = _one(in_trace, name="run test.traced")
    assert run.parent is not None and run.parent.span_id == consumer.context.span_id
    assert run.status.is_ok

    sql = _one(in_trace, **{"db.query.text": "SELECT 40 + 2"})
    assert sql.parent is not None and sql.parent.span_id == run.context.span_id
    assert sql.kind == SpanKind.CLIENT and sql.attributes["db.system.name"] == "postgresql"
    smtp = _one(in_trace, name="smtp send")
    assert smtp.parent is not None and smtp.parent.span_id == run.context.span_id
    assert smtp.kind == SpanKind.CLIENT and smtp.attributes["server.port"] == mail_sink.port
    http = _one(in_trace, **{"url.full": services.http_url})
    assert http.parent is not None and http.parent.span_id == run.context.span_id
    assert http.kind == SpanKind.CLIENT and http.attributes["http.response.status_code"] == 200

    # History's batch is linked to the run's trace (a batch belongs to many traces), and the
    # write appears in the run's own trace under the consumer span whose traceparent the
    # finished event carried. Both end after the acks, just after the run became visible.
    deadline = time.monotonic() + 5
    while True:
        finished = list(spans.get_finished_spans())
        linked = any(
            link.context.trace_id == producer.context.trace_id
            for s in finished
            if s.name == "process belltower.run.>"
            for link in s.links
        )
        stored = [
            s
            for s in _trace_of(finished, producer.context.trace_id)
            if s.name == "INSERT history.runs"
        ]
        if linked and stored:
            break
        assert time.monotonic() < deadline, f"history's write is not in the run's trace: {linked=}"
        await asyncio.sleep(0.05)
    [store] = stored
    assert store.parent is not None and store.parent.span_id == consumer.context.span_id
    assert store.attributes["db.system.name"] == "postgresql"


async def test_a_failed_run_marks_its_span_failed(
    services: Services, spans: InMemorySpanExporter
) -> None:
    _, record = await services.run_now(fail=True)
    assert record.status == "failed"
    trace_id = int(record.trace_id or "0", 16)
    run = _one(_trace_of(list(spans.get_finished_spans()), trace_id), name="run test.traced")
    assert not run.status.is_ok and run.status.description == "asked to fail"


REPO = Path(__file__).resolve().parents[2]
DOCUMENTED_FIELDS = {"occurrence_id", "job_id", "job_type", "status", "scheduled_for", "dispatched_at",
                     "started_at", "finished_at", "duration_ms", "trigger", "summary", "trace_id"}  # fmt: skip


def load_example() -> Any:
    """The integrator guide's subscriber, loaded from its file exactly as published."""
    path = REPO / "docs" / "examples" / "subscribe_run_finished.py"
    spec = importlib.util.spec_from_file_location("subscribe_run_finished", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_subscriber_uses_nothing_but_nats_py() -> None:
    source = (REPO / "docs" / "examples" / "subscribe_run_finished.py").read_text()
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported <= {"__future__", "asyncio", "json", "os", "sys", "collections", "nats"}, (
        imported
    )


async def test_the_documented_plain_subscriber_receives_a_completion_event(
    services: Services, settings: Settings, nc
) -> None:
    example = load_example()
    started, record = await services.run_now(fail=True)
    events = example.run_finished_events(
        settings.nats_url, "belltower.run.finished.failed.test.>", durable="contract-test"
    )
    try:
        event = await asyncio.wait_for(anext(events), 10)
    finally:
        await events.aclose()

    assert event["specversion"] == "1.0"
    assert event["type"] == "io.belltower.run.finished.v1"
    assert event["id"] == started.run_id and event["subject"] == record.job_id
    assert event["source"] == "belltower/notifier-worker"
    assert event["datacontenttype"] == "application/json" and event["time"]
    data = event["data"]
    assert data.keys() >= DOCUMENTED_FIELDS
    assert data["occurrence_id"] == started.occurrence_id and data["status"] == "failed"
    assert data["job_type"] == "test.traced" and data["trigger"] == "manual"
    assert data["summary"] == "asked to fail" and data["trace_id"] == record.trace_id
    assert data["duration_ms"] == record.duration_ms

    [stored] = await stream_messages(nc.jetstream(), "BELLTOWER_RUNS", "belltower.run.finished.")
    assert stored.subject == "belltower.run.finished.failed.test.traced"
    assert stored.headers["Nats-Msg-Id"] == event["id"]
    assert stored.headers["Content-Type"] == "application/cloudevents+json"
    assert stored.headers["traceparent"].split("-")[1] == record.trace_id


def test_the_committed_asyncapi_document_is_the_one_the_code_generates() -> None:
    committed = (REPO / "docs" / "asyncapi.yaml").read_text()
    assert committed == asyncapi.to_yaml(), (
        "docs/asyncapi.yaml is out of date: run `uv run python -m belltower.asyncapi > docs/asyncapi.yaml`"
    )
    document = asyncapi.document()
    assert document["asyncapi"] == "3.0.0"
    finished = document["channels"]["runFinished"]
    assert finished["address"] == "belltower.run.finished.{status}.{job_type}"
    assert set(finished["parameters"]) == {"status", "job_type"}
    payload = document["components"]["schemas"]["RunFinishedData"]["properties"]
    assert payload.keys() >= DOCUMENTED_FIELDS


async def test_every_service_serves_the_asyncapi_document(settings: Settings) -> None:
    server = HealthServer("history", settings.model_copy(update={"health_port": 0}), {})
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/asyncapi.json") as response,
        ):
            assert response.status == 200
            assert await response.json() == asyncapi.document()
    finally:
        await server.stop()
