"""Trace context on the wire and the OTEL_* exporter choice, without any server."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from belltower import logs, telemetry
from belltower.errors import ConfigurationError
from belltower.settings import Settings

TRACEPARENT = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "OTLP, console"}, ["otlp", "console"]),
    ],
)
def test_exporters_follow_the_standard_variables(monkeypatch, env, expected) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert telemetry._exporter_names() == expected


def test_an_unknown_exporter_is_refused_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,jaeger")
    with pytest.raises(
        ConfigurationError, match=r"OTEL_TRACES_EXPORTER: jaeger .*otlp, console, none"
    ):
        telemetry._exporter_names()


@pytest.fixture
def recorded():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = telemetry.use(provider)
    yield exporter
    telemetry.use(previous)


def test_a_consumer_continues_the_producers_trace_from_the_headers(recorded) -> None:
    headers = telemetry.producer_headers("belltower.due.notifier.system.canary", "occ-1")
    assert headers["Nats-Msg-Id"] == "occ-1"
    assert int(headers["traceparent"].split("-")[3], 16) & 1 == 1  # sampled
    with telemetry.consumer_span(
        "belltower.due.notifier.system.canary", "occ-1", headers, consumer="notifier-worker"
    ):
        trace_id = telemetry.current_trace_id()
    producer, consumer = recorded.get_finished_spans()
    assert producer.kind == SpanKind.PRODUCER and consumer.kind == SpanKind.CONSUMER
    assert consumer.parent.span_id == producer.context.span_id
    assert trace_id == format(producer.context.trace_id, "032x")
    assert headers["traceparent"].split("-")[1] == trace_id


def test_without_an_exporter_ids_still_travel_but_nothing_is_recorded(recorded) -> None:
    telemetry.use(TracerProvider(), recording=False)
    first = telemetry.producer_headers("belltower.due.notifier.system.canary", "occ-1")
    second = telemetry.producer_headers("belltower.due.notifier.system.canary", "occ-2")
    assert first["traceparent"].endswith("-02")  # not sampled, random id: as the SDK writes it
    assert first["traceparent"].split("-")[1] != second["traceparent"].split("-")[1]
    with telemetry.consumer_span("s", "occ-1", first, consumer="c") as span:
        assert not span.is_recording()
        assert telemetry.current_trace_id() == first["traceparent"].split("-")[1]
        with telemetry.span("run"):  # a handler's span continues the same trace
            assert telemetry.current_trace_id() == first["traceparent"].split("-")[1]
            assert (
                telemetry.inject({})["traceparent"].split("-")[1]
                == span.get_span_context().trace_id.to_bytes(16).hex()
            )
    assert telemetry.current_trace_id() is None
    assert recorded.get_finished_spans() == ()


@pytest.mark.parametrize("recording", [True, False])
@pytest.mark.parametrize("tracestate", [None, "vendor=1,other=x"])
def test_trace_headers_are_what_inject_writes(recorded, recording, tracestate) -> None:
    telemetry.use(TracerProvider(), recording=recording)
    headers = telemetry.producer_headers("s", "occ-1")
    if tracestate:
        headers["tracestate"] = tracestate
    with telemetry.consumer_span("s", "occ-1", headers, consumer="c"):
        assert telemetry.trace_headers() == telemetry.inject({})
        assert (
            telemetry.trace_headers()["traceparent"].split("-")[1] == telemetry.current_trace_id()
        )
    assert telemetry.trace_headers() == telemetry.inject({}) == {}


def test_log_lines_written_during_a_span_carry_its_trace_id(recorded, capsys) -> None:
    logs.configure("test", Settings(log_json=True))
    try:
        with telemetry.span("work"):
            logging.getLogger("belltower.test").warning("inside", extra={"action": "test.inside"})
            trace_id = telemetry.current_trace_id()
        logging.getLogger("belltower.test").warning("outside", extra={"action": "test.outside"})
    finally:
        logging.getLogger().handlers.clear()
    inside, outside = capsys.readouterr().err.strip().splitlines()
    assert f'"trace_id": "{trace_id}"' in inside
    assert "trace_id" not in outside
