"""The dispatcher's bulk metrics record what one call per occurrence would have recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Histogram

from belltower import metrics
from belltower.metrics import _BulkHistogram

BUCKETS = (0.5, 1, 2.5, 10)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_observe_times_adds_what_as_many_observe_calls_add() -> None:
    bulk_registry, plain_registry = CollectorRegistry(), CollectorRegistry()
    bulk = _BulkHistogram("lag_seconds", "lag", buckets=BUCKETS, registry=bulk_registry)
    plain = Histogram("lag_seconds", "lag", buckets=BUCKETS, registry=plain_registry)
    for amount, count in [(0.0, 3), (0.5, 2), (0.75, 1), (2.5, 4), (11.0, 2), (3.0, 0)]:
        bulk.observe_times(amount, count)
        for _ in range(count):
            plain.observe(amount)
    assert _samples(bulk_registry) == _samples(plain_registry)


@dataclass
class _Entry:
    pool: str
    type: str


@dataclass
class _Planned:
    entry: _Entry
    scheduled_for: datetime


def test_record_dispatched_counts_only_the_confirmed_and_observes_each_lag() -> None:
    at = datetime(2026, 9, 1, 7, 0, tzinfo=UTC)
    mail, sms = _Entry("notifier", "notify.email"), _Entry("notifier", "notify.sms")
    batch = [
        _Planned(mail, at),
        _Planned(mail, at),
        _Planned(sms, at - timedelta(seconds=2)),
        _Planned(sms, at),  # refused by the stream
        _Planned(mail, at - timedelta(seconds=40)),
    ]
    dispatched_at = at + timedelta(seconds=0.2)

    def value(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "mail": value(
            "belltower_occurrences_dispatched_total", pool="notifier", job_type="notify.email"
        ),
        "sms": value(
            "belltower_occurrences_dispatched_total", pool="notifier", job_type="notify.sms"
        ),
        "count": value("belltower_scheduler_lag_seconds_count"),
        "sum": value("belltower_scheduler_lag_seconds_sum"),
        "le_0.25": value("belltower_scheduler_lag_seconds_bucket", le="0.25"),
        "le_2.5": value("belltower_scheduler_lag_seconds_bucket", le="2.5"),
    }
    metrics.record_dispatched(batch, bytes([1, 1, 1, 2, 1]), dispatched_at)

    def delta(key: str, name: str, **labels: str) -> float:
        return value(name, **labels) - before[key]

    assert (
        delta(
            "mail",
            "belltower_occurrences_dispatched_total",
            pool="notifier",
            job_type="notify.email",
        )
        == 3
    )
    assert (
        delta(
            "sms", "belltower_occurrences_dispatched_total", pool="notifier", job_type="notify.sms"
        )
        == 1
    )
    assert delta("count", "belltower_scheduler_lag_seconds_count") == 4
    assert (
        abs(delta("sum", "belltower_scheduler_lag_seconds_sum") - (0.2 + 0.2 + 2.2 + 40.2)) < 1e-9
    )
    assert delta("le_0.25", "belltower_scheduler_lag_seconds_bucket", le="0.25") == 2
    assert delta("le_2.5", "belltower_scheduler_lag_seconds_bucket", le="2.5") == 3
