"""Finds due occurrences and publishes them, exactly once each.

Jobs live in memory in a heap ordered by their next due instant. Each tick takes what is due,
writes the occurrences to the ledger as ``pending`` together with the jobs' next times (one
transaction), publishes the new ones with ``Nats-Msg-Id`` = occurrence id, then marks them
``dispatched``. A crash between those steps leaves ``pending`` rows that the next start
publishes again; JetStream drops the copy it already has, and workers and history de-duplicate
on the same id. An occurrence that is already in the ledger is never published by the planner
again, so restarts and a second scheduler cannot double-dispatch.

Occurrences later than the misfire grace (the scheduler was down) are coalesced into the most
recent one, which runs once; each coalesced occurrence stays in the ledger with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
from nats.js import JetStreamContext

from belltower.errors import Unavailable
from belltower.events import (
    DueOccurrence,
    due_encoder,
    manual_occurrence_id,
    occurrence_id,
    run_id_for,
    utcnow,
)
from belltower.schedule import CompiledSchedule, Schedule, compile_schedule, schedule_encoder
from belltower.subjects import due_subject

from .store import JobRow, Occurrence, Store

log = logging.getLogger(__name__)

MAX_CATCH_UP = 10_000


@lru_cache(maxsize=65_536)
def _compiled(schedule_json: bytes) -> CompiledSchedule:
    """Jobs with the same schedule share one compiled form."""
    return compile_schedule(msgspec.json.decode(schedule_json, type=Schedule))


def compiled_for(schedule: Schedule) -> CompiledSchedule:
    return _compiled(schedule_encoder.encode(schedule))


@dataclass(slots=True)
class Entry:
    """What the dispatcher keeps in memory about one job."""

    id: str
    title: str
    type: str
    pool: str
    params: dict[str, Any]
    priority: int
    timeout_s: float | None
    paused: bool
    schedule: CompiledSchedule
    next_due: datetime | None
    version: int = 0

    @classmethod
    def from_row(cls, row: JobRow) -> Entry:
        return cls(
            id=row.id,
            title=row.title,
            type=row.type,
            pool=row.pool,
            params=row.params,
            priority=row.priority,
            timeout_s=row.timeout_s,
            paused=row.paused,
            schedule=compiled_for(row.schedule),
            next_due=row.next_run_at,
        )


@dataclass(slots=True)
class _Planned:
    entry: Entry
    occurrence: Occurrence


@dataclass
class DispatchStats:
    dispatched: int = 0
    coalesced: int = 0
    publish_failures: int = 0
    last_tick_at: datetime | None = None
    lateness_ms: list[float] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        js: JetStreamContext,
        *,
        misfire_grace_s: float = 60.0,
        max_batch: int = 20_000,
        publish_timeout_s: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.js = js
        self.grace = timedelta(seconds=misfire_grace_s)
        self.max_batch = max_batch
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.heap: list[tuple[float, int, int, int, str]] = []
        self._seq = itertools.count()
        self.wake = asyncio.Event()
        self.stats = DispatchStats()
        self._retry_pending = True
        self._lock = asyncio.Lock()

    # -- the set of jobs ----------------------------------------------------------------------

    async def load(self) -> int:
        rows = await self.store.list_jobs()
        now = self.clock()
        for row in rows:
            entry = Entry.from_row(row)
            if entry.next_due is None and not entry.paused:
                entry.next_due = entry.schedule.next_after(now)
            self.put(entry)
        return len(rows)

    def put(self, entry: Entry) -> None:
        """Add or replace a job; its previous heap item becomes stale."""
        previous = self.entries.get(entry.id)
        entry.version = (previous.version + 1) if previous else 0
        self.entries[entry.id] = entry
        self._push(entry)
        self.wake.set()

    def remove(self, job_id: str) -> None:
        self.entries.pop(job_id, None)

    def _push(self, entry: Entry) -> None:
        if entry.next_due is not None and not entry.paused:
            heapq.heappush(
                self.heap,
                (
                    entry.next_due.timestamp(),
                    -entry.priority,
                    next(self._seq),
                    entry.version,
                    entry.id,
                ),
            )

    # -- the loop -----------------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            self.wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("dispatch tick failed; retrying", extra={"action": "dispatch.error"})
                self._retry_pending = True
                await asyncio.sleep(1.0)
                continue
            delay = self._seconds_to_next()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=delay)

    def _seconds_to_next(self) -> float:
        while self.heap and self._stale(self.heap[0]):
            heapq.heappop(self.heap)
        until_due = max(0.0, self.heap[0][0] - time.time()) if self.heap else 60.0
        return min(until_due, 2.0) if self._retry_pending else until_due

    def _stale(self, item: tuple[float, int, int, int, str]) -> bool:
        entry = self.entries.get(item[4])
        return entry is None or entry.version != item[3] or entry.paused

    async def tick(self) -> int:
        """Dispatch everything due now; returns how many occurrences were published."""
        async with self._lock:
            total = await self.republish_pending() if self._retry_pending else 0
            while True:
                count, more = await self._tick_once()
                total += count
                if not more:
                    break
            self.stats.last_tick_at = self.clock()
            return total

    async def _tick_once(self) -> tuple[int, bool]:
        now = self.clock()
        now_ts = now.timestamp()
        due: list[Entry] = []
        while self.heap and self.heap[0][0] <= now_ts and len(due) < self.max_batch:
            item = heapq.heappop(self.heap)
            if not self._stale(item):
                due.append(self.entries[item[4]])
        if not due:
            return 0, False
        previous = [entry.next_due for entry in due]
        planned: list[_Planned] = []
        next_runs: list[tuple[str, datetime | None]] = []
        for entry in due:
            planned.extend(self._plan(entry, now))
            next_runs.append((entry.id, entry.next_due))
        try:
            published = await self._commit_and_publish(planned, next_runs)
        except BaseException:
            # The database or the broker failed: plan the same occurrences again next time.
            # Ids are deterministic, so whatever was committed is not dispatched twice.
            for entry, next_due in zip(due, previous, strict=True):
                entry.next_due = next_due
            raise
        finally:
            for entry in due:
                self._push(entry)
        more = bool(self.heap) and self.heap[0][0] <= now_ts
        return published, more

    def _plan(self, entry: Entry, now: datetime) -> list[_Planned]:
        """The occurrences of one job due by ``now``; advances the job's next time."""
        times: list[datetime] = []
        at = entry.next_due
        while at is not None and at <= now and len(times) < MAX_CATCH_UP:
            times.append(at)
            at = entry.schedule.next_after(at)
        if at is not None and at <= now:
            at = entry.schedule.next_after(now)
        entry.next_due = at
        on_time = [t for t in times if now - t <= self.grace]
        late = [t for t in times if now - t > self.grace]
        runs = on_time or late[-1:]
        coalesced = late if on_time else late[:-1]
        out: list[_Planned] = []
        if coalesced:
            into = runs[0].isoformat()
            reason = f"coalesced into the occurrence of {into}: the scheduler was not running at its time"
            for t in coalesced:
                out.append(_Planned(entry, self._occurrence(entry, t, "coalesced", reason)))
        for t in runs:
            out.append(_Planned(entry, self._occurrence(entry, t, "pending", None)))
        return out

    @staticmethod
    def _occurrence(entry: Entry, at: datetime, state: str, reason: str | None) -> Occurrence:
        return Occurrence(
            id=occurrence_id(entry.id, at),
            job_id=entry.id,
            scheduled_for=at,
            priority=entry.priority,
            trigger="schedule",
            state=state,
            reason=reason,
        )

    async def _commit_and_publish(
        self, planned: list[_Planned], next_runs: list[tuple[str, datetime | None]]
    ) -> int:
        new_ids = await self.store.plan([p.occurrence for p in planned], next_runs)
        self.stats.coalesced += sum(
            1 for p in planned if p.occurrence.state == "coalesced" and p.occurrence.id in new_ids
        )
        to_send = [
            p for p in planned if p.occurrence.state == "pending" and p.occurrence.id in new_ids
        ]
        to_send.sort(key=lambda p: (p.occurrence.scheduled_for, -p.occurrence.priority))
        return await self._publish(to_send)

    async def _publish(self, batch: list[_Planned]) -> int:
        if not batch:
            return 0
        dispatched_at = self.clock()
        futures: list[tuple[str, asyncio.Future[Any]]] = []
        for p in batch:
            occ = p.occurrence
            message = DueOccurrence(
                occurrence_id=occ.id,
                run_id=run_id_for(occ.id),
                job_id=p.entry.id,
                job_type=p.entry.type,
                job_title=p.entry.title,
                pool=p.entry.pool,
                params=p.entry.params,
                priority=occ.priority,
                trigger=occ.trigger,  # type: ignore[arg-type]
                requested_by=occ.requested_by,
                scheduled_for=occ.scheduled_for,
                dispatched_at=dispatched_at,
                timeout_s=p.entry.timeout_s,
            )
            future = await self.js.publish_async(
                due_subject(p.entry.pool, p.entry.type),
                due_encoder.encode(message),
                headers={"Nats-Msg-Id": occ.id},
            )
            futures.append((occ.id, future))
        done, _ = await asyncio.wait([f for _, f in futures], timeout=self.publish_timeout_s)
        confirmed = [
            occ_id
            for occ_id, f in futures
            if f in done and not f.cancelled() and f.exception() is None
        ]
        failed = len(futures) - len(confirmed)
        for _, f in futures:
            if f not in done:
                f.cancel()
        await self.store.mark_dispatched(confirmed, dispatched_at)
        self.stats.dispatched += len(confirmed)
        lateness = [
            (dispatched_at - p.occurrence.scheduled_for).total_seconds() * 1000 for p in batch
        ]
        self.stats.lateness_ms = lateness[-1000:]
        if failed:
            self.stats.publish_failures += failed
            self._retry_pending = True
            log.warning(
                "some occurrences were not confirmed by JetStream; they stay pending and are retried",
                extra={"action": "dispatch.unconfirmed", "count": failed},
            )
        log.info(
            "occurrences dispatched",
            extra={"action": "dispatch.published", "count": len(confirmed), "unconfirmed": failed},
        )
        return len(confirmed)

    async def republish_pending(self) -> int:
        """Publish again what a crash or a broker outage left ``pending``."""
        total = 0
        incomplete = False
        while True:
            rows = await self.store.pending()
            if not rows:
                break
            orphans = [
                r["id"] for r in rows if not r["job_exists"] or r["job_id"] not in self.entries
            ]
            await self.store.mark_skipped(
                orphans, "the job was deleted before this occurrence was dispatched"
            )
            batch = []
            for r in rows:
                entry = self.entries.get(r["job_id"])
                if entry is None or not r["job_exists"]:
                    continue
                batch.append(
                    _Planned(
                        entry,
                        Occurrence(
                            id=r["id"],
                            job_id=r["job_id"],
                            scheduled_for=r["scheduled_for"],
                            priority=r["priority"],
                            trigger=r["trigger"],
                            state="pending",
                            requested_by=r["requested_by"],
                        ),
                    )
                )
            sent = await self._publish(batch)
            total += sent
            if sent < len(batch):
                incomplete = True
                break
            if len(rows) < 10_000:
                break
        self._retry_pending = incomplete
        if total:
            log.info(
                "pending occurrences published again",
                extra={"action": "dispatch.recovered", "count": total},
            )
        return total

    async def run_now(self, entry: Entry, requested_by: str | None) -> Occurrence:
        """Dispatch one extra occurrence of a job now, outside its schedule."""
        now = self.clock().astimezone(UTC)
        occ = Occurrence(
            id=manual_occurrence_id(),
            job_id=entry.id,
            scheduled_for=now,
            priority=entry.priority,
            trigger="manual",
            state="pending",
            requested_by=requested_by,
        )
        async with self._lock:
            await self.store.plan([occ], [])
            sent = await self._publish([_Planned(entry, occ)])
        if not sent:
            raise Unavailable(
                "JetStream did not confirm the run; it stays pending and is retried automatically"
            )
        return occ
