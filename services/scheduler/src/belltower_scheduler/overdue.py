"""Expected durations and overdue runs.

Each job's expected duration is the p95 of the durations of its latest ``sample`` succeeded runs,
computed by PostgreSQL from the ledger (``run_finished_at - run_started_at``, both from the run
events the partition's holder records). A run going longer than ``factor`` times that, once the
job has ``min_runs`` succeeded runs, is overdue: the reconciler (which already looks at the
runs in flight every ``BELLTOWER_RECONCILE_INTERVAL_S``) marks it in the ledger, once, and
publishes ``belltower.run.overdue`` and counts it in ``belltower_runs_overdue_total``. A job
whose hard timeout comes first (``timeout_s`` at most the threshold) gets no overdue alert: the
timeout ends its run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from belltower import metrics
from belltower.events import RunOverdue, RunOverdueData, event_headers, run_id_for
from belltower.subjects import alert_subject

if TYPE_CHECKING:
    from .dispatcher import Dispatcher
    from .settings import SchedulerSettings

log = logging.getLogger(__name__)

SOURCE = "belltower/scheduler"
ROUND_LIMIT = 1_000
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class OverdueRule:
    """A run is overdue past ``factor`` times the p95 of its job's latest ``sample`` succeeded
    runs, once there are at least ``min_runs`` of them (BELLTOWER_OVERDUE_*)."""

    factor: float = 3.0
    min_runs: int = 5
    sample: int = 20

    def threshold(self, p95: float | None, runs: int) -> float | None:
        """Seconds after which a run is overdue, or None while the job has too few runs."""
        if p95 is None or runs < self.min_runs:
            return None
        return self.factor * p95

    def applies(self, threshold: float, timeout_s: float | None) -> bool:
        """Whether an overdue alert can come before the hard timeout ends the run."""
        return timeout_s is None or threshold < timeout_s


async def raise_overdue(d: Dispatcher, settings: SchedulerSettings, now: datetime) -> list[str]:
    """One reconciler round's look for overdue runs of the dispatcher's partition; returns the
    occurrence ids said overdue (each only once: ``overdue_at`` is set under the lease)."""
    from .store import StateStore

    rule = settings.overdue_rule
    state = StateStore(d.store.pool)
    rows = await state.overdue(
        now - timedelta(seconds=settings.stale_run_s),
        now,
        sample=rule.sample,
        min_runs=rule.min_runs,
        factor=rule.factor,
        partition=d.partition,
        limit=ROUND_LIMIT,
    )
    events: dict[str, RunOverdue] = {}
    for r in rows:
        entry = d.entries.get(r["job_id"])
        threshold = rule.threshold(r["p95"], r["n"])
        if entry is None or threshold is None or not rule.applies(threshold, entry.timeout_s):
            continue
        occurrence = r["id"]
        event_id = f"{occurrence}.overdue"
        data = RunOverdueData(
            run_id=run_id_for(occurrence),
            occurrence_id=occurrence,
            job_id=entry.id,
            job_type=entry.type,
            job_title=entry.title,
            pool=entry.pool,
            started_at=r["run_started_at"],
            running_s=round((now - r["run_started_at"]).total_seconds(), 3),
            expected_s=round(r["p95"], 3),
            factor=rule.factor,
            sample=r["n"],
            timeout_s=entry.timeout_s,
        )
        events[occurrence] = RunOverdue(
            id=event_id, source=SOURCE, subject=entry.id, time=now, data=data
        )
    # Published before the ledger is marked, under ids derived from the occurrence: a crash in
    # between publishes them again next round, and JetStream's de-duplication drops the copy.
    for event in events.values():
        await d.js.publish(
            alert_subject("overdue", event.data.job_type),
            _encoder.encode(event),
            timeout=settings.request_timeout_s,
            headers=event_headers(event.id),
        )
    marked = await state.mark_overdue(list(events), now, d._fence()) if events else []
    for occurrence in marked:
        data = events[occurrence].data
        metrics.RUNS_OVERDUE.labels(data.pool, data.job_type).inc()
        log.warning(
            "run overdue",
            extra={
                "action": "reconcile.overdue",
                "occurrence_id": occurrence,
                "running_s": data.running_s,
                "expected_s": data.expected_s,
            },
        )
    return marked
