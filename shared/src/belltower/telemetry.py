"""Tracing: one trace per occurrence, from the scheduler's publish to the handler's own work.

The scheduler opens a PRODUCER span per due occurrence and sends its context in the message's
NATS headers as W3C ``traceparent``; the worker continues it with a CONSUMER span around the
processing, the handler's run is a child of that, and the handler's SQL (asyncpg), HTTP (httpx)
and SMTP calls are children of the run. Run events carry the trace id (history stores it,
``belltower runs show`` prints it) and the same ``traceparent`` header.

Exporters come from the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``,
``none``, comma separated; default ``otlp`` when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, else ``none``), the ``OTEL_EXPORTER_OTLP_*``
settings, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER``.
Without an exporter nothing is recorded (spans are created unsampled, which costs a
microsecond or two) but trace ids are still generated, propagated and stored.

Attribute names follow the current messaging and database semantic conventions
(``messaging.operation.type``, ``db.system.name``, ``db.query.text``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .errors import ConfigurationError

log = logging.getLogger(__name__)

_propagator = TraceContextTextMapPropagator()

MESSAGING_SYSTEM = "nats"
_provider: TracerProvider | None = None
_tracer: Tracer = trace.get_tracer("belltower")
_unsampled: RandomIdGenerator | None = None
"""Set when this process records no spans: producer headers are then made without a span."""
_instrumented = False
EXPORTERS = ("otlp", "console", "none")


def _exporter_names() -> list[str]:
    configured = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not configured:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [name.strip().lower() for name in configured.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not a trace exporter Belltower "
            f"ships (accepted: {', '.join(EXPORTERS)}, comma separated)"
        )
    return [name for name in names if name != "none"]


def _processor(name: str) -> SpanProcessor:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return SimpleSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


def _opt_in_stable_semconv() -> None:
    """Ask the OTel instrumentations for the stable database and HTTP attribute names."""
    current = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    tokens = {t.strip() for t in current.split(",") if t.strip()}
    for signal in ("database", "http"):
        if not tokens & {signal, f"{signal}/dup"}:
            tokens.add(signal)
    os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = ",".join(sorted(tokens))


def setup(service: str, *, instrument_clients: bool = False) -> TracerProvider:
    """Choose this process's tracer provider from the ``OTEL_*`` variables, once.

    A provider chosen before (by another service in the same process, or a test through
    :func:`use`) is kept. ``instrument_clients`` traces asyncpg and httpx calls: workers turn it
    on so their handlers' SQL and HTTP show in the run's trace.
    """
    provider = _provider
    if provider is None:
        names = _exporter_names()
        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}
            ),
            # Without an exporter nothing is recorded; ids are still made and propagated.
            sampler=None if names else ALWAYS_OFF,
        )
        for name in names:
            provider.add_span_processor(_processor(name))
        use(provider, recording=bool(names))
        trace.set_tracer_provider(provider)  # also OpenTelemetry's global, for other libraries
        log.info(
            "tracing configured",
            extra={"action": "telemetry.configured", "exporters": names or ["none"]},
        )
    if instrument_clients:
        instrument_client_libraries()
    return provider


def use(provider: TracerProvider | None, *, recording: bool = True) -> TracerProvider | None:
    """Make ``provider`` the one Belltower's spans go to; returns the previous one.

    For tests (an in-memory exporter) and for embedding; ``None`` goes back to OpenTelemetry's
    global provider. Client libraries already instrumented are moved to the new provider.
    """
    global _provider, _tracer, _unsampled
    previous = _provider
    _provider = provider
    _tracer = (provider or trace.get_tracer_provider()).get_tracer("belltower")
    _unsampled = None if recording or provider is None else RandomIdGenerator()
    if _instrumented:
        _uninstrument_client_libraries()
        instrument_client_libraries()
    return previous


def instrument_client_libraries() -> None:
    """Trace every asyncpg query and httpx request of this process (idempotent).

    Only workers call it: there the only SQL and HTTP are their handlers', so each query and
    request is a child of the run that made it.
    """
    global _instrumented
    if _instrumented:
        return
    _opt_in_stable_semconv()
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=_provider)
    if importlib.util.find_spec("httpx") is not None:  # without httpx there is nothing to trace
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    _instrumented = True


def _uninstrument_client_libraries() -> None:
    global _instrumented
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().uninstrument()
    if importlib.util.find_spec("httpx") is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
    _instrumented = False


def producer_headers(subject: str, message_id: str) -> dict[str, str]:
    """Headers for one published message: ``Nats-Msg-Id`` and the ``traceparent`` of a new
    PRODUCER span (a new trace when no span is current), which ends at once: the publish is
    asynchronous, its confirmation is awaited in bulk later.

    When nothing is recorded, the ``traceparent`` an unsampled span would have is written
    directly: same ids and flags for a fifth of the cost (1 µs instead of 5), on the
    dispatcher's hot path.
    """
    if (ids := _unsampled) is not None and not trace.get_current_span().get_span_context().is_valid:
        return {
            "Nats-Msg-Id": message_id,
            # Flags 02: not sampled, random trace id (W3C trace context level 2), as the SDK sets.
            "traceparent": f"00-{ids.generate_trace_id():032x}-{ids.generate_span_id():016x}-02",
        }
    span = _tracer.start_span(
        f"send {subject}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": subject,
            "messaging.message.id": message_id,
        },
    )
    headers = {"Nats-Msg-Id": message_id}
    _propagator.inject(headers, trace.set_span_in_context(span))
    span.end()
    return headers


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's ``traceparent`` to ``headers`` (run events carry it on)."""
    _propagator.inject(headers)
    return headers


@contextlib.contextmanager
def consumer_span(
    subject: str,
    message_id: str,
    headers: Mapping[str, str] | None,
    *,
    consumer: str,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """The CONSUMER span of processing one message, child of the producer's ``traceparent``.

    When nothing is recorded, the producer's span context is made current instead of a new
    unsampled span: the trace id travels on the same (into logs, run events and history), for
    a third of the cost, on the worker's per-run path.
    """
    parent = _propagator.extract(headers or {})
    if _unsampled is not None:
        current = trace.get_current_span(parent)
        if current.get_span_context().is_valid:
            token = otel_context.attach(parent)
            try:
                yield current
            finally:
                otel_context.detach(token)
            return
    with _tracer.start_as_current_span(
        f"process {subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": message_id,
            **(attributes or {}),
        },
    ) as span:
        yield span


@contextlib.contextmanager
def batch_span(destination: str, messages: Sequence[Any], *, consumer: str) -> Iterator[Span]:
    """The CONSUMER span of processing a batch, linked to each message's ``traceparent``.

    Per the messaging conventions a batch is not a child of any one producer; links join it
    to every run's trace. Links are only read when the span is recorded.
    """
    with _tracer.start_as_current_span(
        f"process {destination}",
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": destination,
            "messaging.consumer.group.name": consumer,
            "messaging.batch.message_count": len(messages),
        },
    ) as current:
        if current.is_recording():
            for message in messages:
                linked = trace.get_current_span(_propagator.extract(message.headers or {}))
                if linked.get_span_context().is_valid:
                    current.add_link(linked.get_span_context())
        yield current


def span_in_each_trace(
    messages: Iterable[Any],
    name: str,
    *,
    start_time: int,
    kind: SpanKind = SpanKind.CLIENT,
    attributes: Mapping[str, str | int] | None = None,
) -> None:
    """Give each message's trace a span of work done for a whole batch (from ``start_time``,
    in ns, to now), as a child of the span its ``traceparent`` names, so each run's trace
    shows, say, history storing it. Nothing is read when this process records no spans."""
    if _unsampled is not None:
        return
    for message in messages:
        parent = _propagator.extract(message.headers or {})
        if trace.get_current_span(parent).get_span_context().is_valid:
            _tracer.start_span(
                name, context=parent, kind=kind, attributes=attributes, start_time=start_time
            ).end()


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """A child span of the current one (a handler's run, an SMTP conversation).

    When nothing is recorded and a trace is current, that trace's span stands for it: an
    unsampled child would only cost time.
    """
    if _unsampled is not None:
        current = trace.get_current_span()
        if current.get_span_context().is_valid:
            yield current
            return
    with _tracer.start_as_current_span(name, kind=kind, attributes=attributes or {}) as current:
        yield current


def record_outcome(status: str, error: str | None) -> None:
    """Mark the current span failed when a run did not succeed."""
    current = trace.get_current_span()
    current.set_attribute("belltower.run.status", status)
    if status != "succeeded":
        current.set_status(Status(StatusCode.ERROR, error or status))


def recording() -> bool:
    """Whether this process records spans (an exporter is configured); when it does not, a
    caller may skip building a span's name and attributes, :func:`span` would not use them."""
    return _unsampled is None


def run_trace() -> tuple[str | None, dict[str, str]]:
    """The current trace id and :func:`trace_headers`, from one look at the current span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, {}
    return format(ctx.trace_id, "032x"), _headers_of(ctx)


def trace_headers() -> dict[str, str]:
    """The headers :func:`inject` adds for the current span (``traceparent``, and
    ``tracestate`` when it has one), written directly: a run's events share them, so the worker
    makes them once per run instead of once per event through the propagator."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return _headers_of(ctx)


def _headers_of(ctx: SpanContext) -> dict[str, str]:
    headers = {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"}
    if ctx.trace_state:
        headers["tracestate"] = ctx.trace_state.to_header()
    return headers


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
