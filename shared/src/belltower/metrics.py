"""Belltower's Prometheus metrics: the names the Helm chart's dashboard and alert rules use.

Every series is defined here so the contract is in one place; services record through the
small functions below, one or two calls each, aggregated per batch on the hot paths. Labels
are bounded (pool, job type, status, reason, policy, partition, stream, consumer): never a
job id. Each process serves its own registry on ``/metrics`` (see :mod:`belltower.health`).

Replicas of one service report the same value for the gauges read from shared state
(``belltower_consumer_pending_messages``, ``belltower_jobs_failing``): aggregate those with
``max``, the counters and histograms with ``sum``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# No ``*_created`` twin series: Prometheus does not use them, and they double the counters.
disable_created_metrics()

_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600)

OCCURRENCES_DISPATCHED = Counter(
    "belltower_occurrences_dispatched_total",
    "Occurrences published to JetStream and confirmed, by worker pool and job type",
    ["pool", "job_type"],
)
OCCURRENCES_SKIPPED = Counter(
    "belltower_occurrences_skipped_total",
    "Occurrences the scheduler decided not to run, by reason (a short code)",
    ["reason"],
)
OCCURRENCES_MISSED = Counter(
    "belltower_occurrences_missed_total",
    "Occurrences not run at their time (the scheduler was down), by the misfire policy applied",
    ["policy"],
)
OCCURRENCES_HELD = Counter(
    "belltower_occurrences_held_total",
    "Occurrences written waiting instead of pending, by cause: concurrency (their concurrency "
    "key had its limit of runs in flight; they run when one finishes)",
    ["cause"],
)
CONCURRENCY_WAITED = Histogram(
    "belltower_concurrency_wait_seconds",
    "How long occurrences waited for a slot of their concurrency key before they were released",
    buckets=_LAG_BUCKETS,
)
OCCURRENCES_RECOVERED = Counter(
    "belltower_occurrences_recovered_total",
    "Occurrences the reconciler published again: dispatched, but no worker started them within "
    "their start deadline (the broker lost them), by worker pool",
    ["pool"],
)
OCCURRENCES_LOST = Counter(
    "belltower_occurrences_lost_total",
    "Occurrences the reconciler gave up on: published again up to its bound and never started; "
    "the ledger says lost, with the reason",
    ["pool"],
)
RUNS_ABANDONED = Counter(
    "belltower_runs_abandoned_total",
    "Runs the reconciler ended abandoned: their worker stopped heart-beating and no delivery of "
    "the occurrence was left to take them over",
    ["pool"],
)


class _BulkHistogram(Histogram):
    """A Histogram that can record one value observed many times in one step.

    The dispatcher confirms tens of thousands of occurrences at once, most of them due at the
    same instant and all of a batch dispatched at the same instant: their lags are a handful
    of distinct values. One ``observe`` per occurrence took about a tenth of the scheduler's
    CPU on a 100,000-occurrence morning; :meth:`observe_times` adds ``count`` to the bucket and
    ``amount * count`` to the sum, exactly what ``count`` calls of ``observe`` add
    (tests/unit/test_metrics.py checks it against them).
    """

    def observe_times(self, amount: float, count: int) -> None:
        if count <= 0:
            return
        self._raise_if_not_observable()
        self._sum.inc(amount * count)
        for i, bound in enumerate(self._upper_bounds):
            if amount <= bound:
                self._buckets[i].inc(count)
                break


SCHEDULER_LAG = _BulkHistogram(
    "belltower_scheduler_lag_seconds",
    "Dispatch time minus due time of each dispatched occurrence",
    buckets=_LAG_BUCKETS,
)


class _SchedulerState(Collector):
    """``belltower_scheduler_leader{partition}`` and ``belltower_scheduler_jobs``, read from the
    scheduler at each scrape through the functions :func:`watch_scheduler` gives."""

    def __init__(self) -> None:
        self.leader: Callable[[], Mapping[str, int]] = dict
        self.jobs: Callable[[], int] = int

    def collect(self) -> Iterator[GaugeMetricFamily]:
        leader = GaugeMetricFamily(
            "belltower_scheduler_leader",
            "1 while this scheduler process dispatches the partition, else 0",
            labels=["partition"],
        )
        for partition, value in sorted(self.leader().items()):
            leader.add_metric([partition], value)
        yield leader
        yield GaugeMetricFamily(
            "belltower_scheduler_jobs",
            "Jobs the scheduler holds in the partitions it dispatches (paused included)",
            value=self.jobs(),
        )


_scheduler_state = _SchedulerState()
REGISTRY.register(_scheduler_state)


def watch_scheduler(leader: Callable[[], Mapping[str, int]], jobs: Callable[[], int]) -> None:
    """Where the scheduler gauges read from: ``leader()`` maps each partition to 1 (this
    process dispatches it) or 0, ``jobs()`` counts the jobs held."""
    _scheduler_state.leader = leader
    _scheduler_state.jobs = jobs


RUNS = Counter(
    "belltower_runs_total",
    "Finished runs by pool, job type and status (succeeded, failed, dead_lettered, timed_out, "
    "held; lost and abandoned are counted by the scheduler's reconciler instead)",
    ["pool", "job_type", "status"],
)
RUN_DURATION = Histogram(
    "belltower_run_duration_seconds",
    "How long a run's handler took, from start to finish",
    ["pool", "job_type"],
    buckets=_DURATION_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "belltower_queue_wait_seconds",
    "Start of a run minus the dispatch of its occurrence: time spent queued",
    ["pool"],
    buckets=_LAG_BUCKETS,
)
CONSUMER_PENDING = Gauge(
    "belltower_consumer_pending_messages",
    "Messages in the stream not yet delivered to the durable consumer (read at each scrape)",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERIES = Counter(
    "belltower_consumer_redeliveries_total",
    "Due occurrences delivered again to a worker (a crash, a timeout, a nak)",
    ["pool"],
)
HISTORY_EVENTS = Counter(
    "belltower_history_events_total",
    "Run events stored by history, by event (started, progress, finished)",
    ["event"],
)
JOBS_FAILING = Gauge(
    "belltower_jobs_failing",
    "Jobs whose last 3 finished runs all failed (read from history at most every 30 s)",
)


JOB_FAILURE_STREAK = Gauge(
    "belltower_job_failure_streak",
    "Consecutive failed runs of a job up to its latest finished run (jobs with a streak only; "
    "set by the scheduler holding the job's partition)",
    ["job_id", "job_type"],
)
JOB_ALERTS = Counter(
    "belltower_job_alerts_total",
    "Job alerts raised: failing (a failure streak reached alert_after_failures), recovered",
    ["kind"],
)
RUNS_OVERDUE = Counter(
    "belltower_runs_overdue_total",
    "Runs that went longer than BELLTOWER_OVERDUE_FACTOR times their job's expected duration",
    ["pool", "job_type"],
)


_streak_types: dict[str, str] = {}


def set_failure_streak(job_id: str, job_type: str, streak: int) -> None:
    """A job's current streak; a job whose streak ended leaves the gauge (bounded series)."""
    if streak > 0:
        _streak_types[job_id] = job_type
        JOB_FAILURE_STREAK.labels(job_id, job_type).set(streak)
    elif job_id in _streak_types:
        JOB_FAILURE_STREAK.remove(job_id, _streak_types.pop(job_id))


def forget_failure_streaks(job_ids: Container[str]) -> None:
    """Drop the streaks of jobs this process no longer holds (a partition lost or handed over)."""
    for job_id in [j for j in _streak_types if j in job_ids]:
        set_failure_streak(job_id, "", 0)


def record_dispatched(
    batch: Sequence[Any], confirmed: bytes | bytearray, dispatched_at: datetime
) -> None:
    """Count the confirmed occurrences of a published batch and observe their lag.

    ``batch`` holds the dispatcher's planned occurrences (``entry.pool``, ``entry.type``,
    ``scheduled_for``); ``confirmed[i]`` is 1 where JetStream acknowledged the i-th.
    """
    if confirmed.count(1) == len(batch):
        rows = batch
    else:
        rows = [p for p, ok in zip(batch, confirmed, strict=False) if ok == 1]
    # Counted in C (Counter over map), then one call per distinct value: a batch has a few
    # pools and types and a few due instants, whatever its size.
    for (pool, job_type), n in Tally(map(_pool_and_type, rows)).items():
        OCCURRENCES_DISPATCHED.labels(pool, job_type).inc(n)
    for scheduled_for, n in Tally(map(_scheduled_for, rows)).items():
        SCHEDULER_LAG.observe_times(max(0.0, (dispatched_at - scheduled_for).total_seconds()), n)


_pool_and_type = attrgetter("entry.pool", "entry.type")
_scheduled_for = attrgetter("scheduled_for")


def record_run(pool: str, data: Any) -> None:
    """Count one finished run (a ``RunFinishedData``) with its duration and queue wait."""
    RUNS.labels(pool, data.job_type, data.status).inc()
    RUN_DURATION.labels(pool, data.job_type).observe(data.duration_ms / 1000)
    QUEUE_WAIT.labels(pool).observe(
        max(0.0, (data.started_at - data.dispatched_at).total_seconds())
    )


_EVENT_NAMES = {
    "RunStarted": "started",
    "RunProgress": "progress",
    "RunFinished": "finished",
    "JobFailing": "job_failing",
    "JobRecovered": "job_recovered",
    "RunOverdue": "overdue",
}


def record_history_events(events: Iterable[Any]) -> None:
    """Count run events history stored, by kind."""
    for name, n in Tally(type(e).__name__ for e in events).items():
        HISTORY_EVENTS.labels(_EVENT_NAMES.get(name, name)).inc(n)


async def refresh_consumer_pending(js: Any, stream: str, consumer: str) -> None:
    """Read how many messages wait for ``consumer`` (for the scrape about to be answered)."""
    info = await js.consumer_info(stream, consumer)
    CONSUMER_PENDING.labels(stream, consumer).set(info.num_pending or 0)


def record_runs(pool: str, batch: Iterable[Any]) -> None:
    """Count a batch of finished runs (``RunFinishedData``), as :func:`record_run` does each,
    with one label lookup per job type and status rather than three per run."""
    counts: Tally[tuple[str, str]] = Tally()
    durations: dict[str, Any] = {}
    wait = QUEUE_WAIT.labels(pool).observe
    for data in batch:
        counts[(data.job_type, data.status)] += 1
        observe = durations.get(data.job_type)
        if observe is None:
            observe = durations[data.job_type] = RUN_DURATION.labels(pool, data.job_type).observe
        observe(data.duration_ms / 1000)
        wait(max(0.0, (data.started_at - data.dispatched_at).total_seconds()))
    for (job_type, status), n in counts.items():
        RUNS.labels(pool, job_type, status).inc(n)
