"""Job state the ledger decides: failure streaks (alert, auto-pause, recovery) and the pauses
Belltower makes itself.

The partition's holder records each run's first finished status in the ledger
(``Store.record_runs``); that UPDATE returns a row only the first time, so :meth:`JobState.finished`,
called in the same transaction with those rows, sees each occurrence once, whatever the broker
redelivers or the run tracker replays after a restart. It advances each job's streak
(``streaks.py``), pauses the jobs whose ``pause_after_failures`` is reached, and publishes the
``failing`` and ``recovered`` alerts before the transaction commits, with ids derived from the
occurrence that decided them: if the commit fails the batch is applied again and the same ids
are published again, which JetStream's de-duplication drops (and history's outbox, keyed on
the event, would too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec
from nats.js import JetStreamContext

from belltower import metrics
from belltower.events import (
    JobFailing,
    JobRecovered,
    JobStreakData,
    event_headers,
    run_id_for,
)
from belltower.subjects import alert_subject

from . import statesql
from .entry import Entry, job_spec
from .streaks import BELLTOWER, Outcome, Streak, advance, pause_note

log = logging.getLogger(__name__)

SOURCE = "belltower/scheduler"
_encoder = msgspec.json.Encoder()


def paused_copy(entry: Entry) -> Entry:
    """The job's entry, paused (a new object: the one queued becomes stale, see ``due.py``)."""
    s = entry.spec
    spec = job_spec(s.type, s.pool, s.priority, s.timeout_s, s.policy, s.result_mail, True)
    return Entry(entry.id, entry.title, entry.params_json, entry.schedule, None, spec)


@dataclass
class Applied:
    """What one batch did, for the dispatcher to apply in memory after the commit."""

    paused: list[str] = field(default_factory=list)
    streaks: dict[str, int] = field(default_factory=dict)
    """Job id -> streak after the batch (0: ended)."""


class JobState:
    """Failure streaks of the dispatcher's jobs, applied inside the ledger's transaction."""

    def __init__(
        self,
        js: JetStreamContext,
        entries: dict[str, Entry],
        clock: Callable[[], datetime],
        publish_timeout_s: float = 10.0,
    ) -> None:
        self.js = js
        self.entries = entries
        self.clock = clock
        self.publish_timeout_s = publish_timeout_s

    async def finished(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record], applied: Applied
    ) -> None:
        """Advance the streaks of the jobs whose runs ``rows`` first recorded as finished;
        what is to change in memory once the transaction commits goes into ``applied``."""
        if not rows:
            return
        ordered = sorted(rows, key=lambda r: (r["run_finished_at"] or self.clock(), r["id"]))
        jobs = sorted({r["job_id"] for r in ordered})
        current: dict[str, Streak | None] = {
            r["job_id"]: Streak(
                r["streak"], r["first_failed_at"], r["last_occurrence_id"], r["alerted"]
            )
            for r in await conn.fetch(statesql.STREAKS_FOR_UPDATE, jobs)
        }
        changed: set[str] = set()
        notices: list[tuple[str, Outcome, asyncpg.Record]] = []
        pauses: dict[str, str] = {}
        for r in ordered:
            job_id = r["job_id"]
            entry = self.entries.get(job_id)
            policy = entry.policy if entry is not None else None
            before = current.get(job_id)
            outcome = advance(
                before,
                status=r["run_status"],
                occurrence_id=r["id"],
                finished_at=r["run_finished_at"] or self.clock(),
                alert_after=policy.alert_after_failures if policy else None,
                pause_after=policy.pause_after_failures if policy else None,
            )
            if outcome.streak != before:
                current[job_id] = outcome.streak
                changed.add(job_id)
            if outcome.pause and outcome.streak is not None:
                pauses[job_id] = pause_note(outcome.streak.streak)
            if outcome.failing or outcome.recovered is not None:
                notices.append((job_id, outcome, r))
        await self._write(conn, current, changed)
        if pauses:
            ids = list(pauses)
            done = await conn.fetch(
                statesql.PAUSE_JOBS, ids, [pauses[j] for j in ids], BELLTOWER, self.clock()
            )
            applied.paused = [d["id"] for d in done]
        for job_id, outcome, r in notices:
            await self._publish(job_id, outcome, r, outcome.pause and job_id in applied.paused)
        applied.streaks = {j: (s.streak if (s := current.get(j)) else 0) for j in changed}

    async def _write(
        self, conn: asyncpg.Connection, current: dict[str, Streak | None], changed: set[str]
    ) -> None:
        put = [(j, s) for j in sorted(changed) if (s := current.get(j)) is not None]
        drop = [j for j in sorted(changed) if current.get(j) is None]
        if put:
            await conn.execute(
                statesql.STREAKS_PUT,
                [j for j, _ in put],
                [s.streak for _, s in put],
                [s.first_failed_at for _, s in put],
                [s.last_occurrence_id for _, s in put],
                [s.alerted for _, s in put],
            )
        if drop:
            await conn.execute(statesql.STREAKS_DROP, drop)

    async def _publish(
        self, job_id: str, outcome: Outcome, row: asyncpg.Record, paused: bool
    ) -> None:
        entry = self.entries.get(job_id)
        if entry is None:
            return
        streak = outcome.recovered if outcome.recovered is not None else outcome.streak
        assert streak is not None
        occurrence = row["id"]
        data = JobStreakData(
            job_id=job_id,
            job_type=entry.type,
            job_title=entry.title,
            pool=entry.pool,
            occurrence_id=occurrence,
            run_id=run_id_for(occurrence),
            status=row["run_status"],
            streak=streak.streak,
            alert_after=entry.policy.alert_after_failures or 0,
            first_failed_at=streak.first_failed_at,
            at=self.clock(),
            error=row["run_error"],
            paused=paused,
            result_mail=entry.result_mail,
        )
        kind: Literal["failing", "recovered"]
        kind = "recovered" if outcome.recovered is not None else "failing"
        event_id = f"{occurrence}.{kind}"
        cls = JobRecovered if kind == "recovered" else JobFailing
        event = cls(id=event_id, source=SOURCE, subject=job_id, time=data.at, data=data)
        await self.js.publish(
            alert_subject(kind, entry.type),
            _encoder.encode(event),
            timeout=self.publish_timeout_s,
            headers=event_headers(event_id),
        )
        metrics.JOB_ALERTS.labels(kind).inc()
        log.warning(
            f"job {kind}" + (f" after {streak.streak} failed runs" if kind == "failing" else ""),
            extra={"action": f"jobstate.{kind}", "job_id": job_id, "occurrence_id": occurrence},
        )

    def apply(self, applied: Applied, put: Callable[[Entry], None]) -> None:
        """After the commit: the paused jobs' entries, and the streak gauges."""
        for job_id in applied.paused:
            entry = self.entries.get(job_id)
            if entry is not None and not entry.paused:
                put(paused_copy(entry))
        for job_id, streak in applied.streaks.items():
            entry = self.entries.get(job_id)
            metrics.set_failure_streak(job_id, entry.type if entry else "", streak)
