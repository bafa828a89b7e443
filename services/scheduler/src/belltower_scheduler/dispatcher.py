"""Finds due occurrences and publishes them, exactly once each.

Jobs live in memory in a heap ordered by their next due instant. Each tick takes what is due,
writes the occurrences to the ledger as ``pending`` together with the jobs' next times (one
transaction per chunk of ``PLAN_CHUNK``), publishes the new ones with ``Nats-Msg-Id`` =
occurrence id, then marks them ``dispatched``. The steps are pipelined, as the database and the
broker are separate processes that can work while this one does: chunk k+1 is written while
chunk k is published, and acks are awaited and marked in background tasks that the tick
settles before it returns. A chunk is only ever published after its own transaction committed.
A crash between those steps leaves ``pending`` rows that the next start publishes again;
JetStream drops the copy it already has, and workers and history de-duplicate on the same id. An occurrence that is already in the ledger is never published by the planner
again, so restarts and a second scheduler cannot double-dispatch.

Occurrences later than the misfire grace (the scheduler was down) are coalesced into the most
recent one, which runs once; each coalesced occurrence stays in the ledger with its reason.

With several replicas, a Dispatcher serves one partition of the jobs under a lease (see
``lease.py``): it loads and republishes only that partition, checks the lease before planning
and before publishing, and writes the ledger only under the lease's fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
from asyncpg import Record
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
from belltower.schedule import (
    CompiledSchedule,
    Schedule,
    compile_schedule,
    schedule_decoder,
    schedule_encoder,
)
from belltower.subjects import due_subject

from .lease import FENCE_HEADER, Deposed, Lease
from .store import JobRow, Occurrence, Partition, Store

log = logging.getLogger(__name__)

MAX_CATCH_UP = 10_000

PLAN_CHUNK = 5_000
"""Occurrences per ledger transaction. A batch is written and published in chunks so that the
database writes one chunk while the previous one is being published: big enough that a
statement's round-trip is amortised, small enough that publishing starts early."""


@lru_cache(maxsize=65_536)
def _compiled(schedule_json: bytes) -> CompiledSchedule:
    """Jobs with the same schedule share one compiled form."""
    return compile_schedule(msgspec.json.decode(schedule_json, type=Schedule))


def compiled_for(schedule: Schedule) -> CompiledSchedule:
    return _compiled(schedule_encoder.encode(schedule))


@lru_cache(maxsize=65_536)
def compiled_for_text(schedule_text: str) -> CompiledSchedule:
    """The compiled form of a schedule as PostgreSQL prints it (jsonb prints equal values
    alike): loading a million jobs decodes each distinct schedule once, not once per job."""
    return compiled_for(schedule_decoder.decode(schedule_text))


_due_subject = lru_cache(maxsize=1_024)(due_subject)
"""One subject string per (pool, type) instead of one formatted per message."""

_EMPTY_PARAMS = b"{}"
_shared_values: dict[Any, Any] = {}


def _shared(value: Any) -> Any:
    """One object per distinct small value (priority, timeout), not one per job.

    asyncpg builds a new int or float per row; 100k jobs at priority 500 would otherwise hold
    100k equal ints. Only used for values with few distinct instances in practice.
    """
    # Keyed by type too: 1 == 1.0 == True, and a timeout of 1.0 must stay a float on the wire.
    return _shared_values.setdefault((type(value), value), value)


def _params_json(params: Any) -> bytes:
    """A job's params as the compact JSON the due message carries, encoded once per job.

    Exactly ``msgspec.json.encode`` of the decoded dict (same key order, same number forms), so
    the message bytes are what encoding the dict at publish time gave; keeping bytes instead of
    a dict saves a few hundred bytes per job and the encoding at each dispatch.
    """
    if isinstance(params, str):
        params = msgspec.json.decode(params)
    encoded = msgspec.json.encode(params)
    return _EMPTY_PARAMS if encoded == _EMPTY_PARAMS else encoded


@dataclass(slots=True)
class Entry:
    """What the dispatcher keeps in memory about one job: about 100k of these live at once."""

    id: str
    title: str
    type: str
    pool: str
    params_json: bytes
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
            type=sys.intern(row.type),
            pool=sys.intern(row.pool),
            params_json=_params_json(row.params),
            priority=_shared(row.priority),
            timeout_s=_shared(row.timeout_s),
            paused=row.paused,
            schedule=compiled_for(row.schedule),
            next_due=row.next_run_at,
        )

    @classmethod
    def from_record(cls, r: Record) -> Entry:
        """Straight from a ``scheduler.jobs`` record (see ``Store.job_pages``), without a JobRow.

        Type and pool names are interned and small values shared, since a few of them repeat
        across all jobs; params stay encoded.
        """
        return cls(
            id=r["id"],
            title=r["title"],
            type=sys.intern(r["type"]),
            pool=sys.intern(r["pool"]),
            params_json=_params_json(r["params"]),
            priority=_shared(r["priority"]),
            timeout_s=_shared(r["timeout_s"]),
            paused=r["paused"],
            schedule=compiled_for_text(r["schedule"]),
            next_due=r["next_run_at"],
        )


@dataclass(slots=True, kw_only=True)
class _Planned(Occurrence):
    """An occurrence planned for a job: the ledger row plus the job it will be published for.

    One object per occurrence (the Store reads it as an ``Occurrence``); the entry is the one
    that was planned, even if the job is replaced while the tick awaits the database.
    """

    entry: Entry


@dataclass(slots=True)
class _Chunk:
    """Occurrences written in one transaction, with the next times of the jobs whose last
    occurrence of this batch is among them (never before their occurrences are written)."""

    occurrences: list[_Planned]
    next_runs: list[tuple[str, datetime | None]] = field(default_factory=list)


async def _wait_all(futures: list[asyncio.Future[Any]], timeout: float) -> None:
    """Wait until every future is done, or ``timeout`` seconds.

    ``asyncio.wait`` costs several times more per future (sets of done and pending, callbacks
    removed one by one), which shows at 100k publishes a tick; one counter does here.
    """
    if not futures:
        return
    all_done = asyncio.get_running_loop().create_future()
    remaining = len(futures)

    def one_done(_: asyncio.Future[Any]) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 and not all_done.done():
            all_done.set_result(None)

    for future in futures:
        future.add_done_callback(one_done)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done, timeout)


def _stream_order(p: _Planned) -> tuple[datetime, int]:
    """Publication order: by scheduled instant, and within an instant higher priority first."""
    return (p.scheduled_for, -p.priority)


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
        plan_chunk: int = PLAN_CHUNK,
        publish_timeout_s: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        partition: Partition | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.store = store
        self.js = js
        self.grace = timedelta(seconds=misfire_grace_s)
        self.max_batch = max_batch
        self.plan_chunk = plan_chunk
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.heap: list[tuple[float, int, int, int, str]] = []
        self._seq = itertools.count()
        self.wake = asyncio.Event()
        self.stats = DispatchStats()
        self._retry_pending = True
        self._lock = asyncio.Lock()
        self._confirming: list[asyncio.Task[int]] = []
        self.partition = partition
        self.lease = lease

    # -- the set of jobs ----------------------------------------------------------------------

    async def load(self) -> int:
        """Fill the dispatcher from the jobs table, one cursor page at a time."""
        now = self.clock()
        count = 0
        async for records in self.store.job_pages(partition=self.partition):
            for record in records:
                entry = Entry.from_record(record)
                if entry.next_due is None and not entry.paused:
                    entry.next_due = entry.schedule.next_after(now)
                self.put(entry)
            count += len(records)
        return count

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
                    _shared(-entry.priority),
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
            except Deposed as exc:
                log.warning(str(exc), extra={"action": "dispatch.deposed"})
                self._retry_pending = True
                await asyncio.sleep(1.0)
                continue
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
        """Dispatch everything due now; returns how many occurrences were published.

        Publishes are confirmed and marked ``dispatched`` in the background while later chunks
        are written and published; all of that is settled before the tick returns.
        """
        async with self._lock:
            total = await self.republish_pending() if self._retry_pending else 0
            try:
                while await self._tick_once():
                    pass
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    # Shutting down: do not wait for acks; unmarked rows stay pending.
                    for task in self._confirming:
                        task.cancel()
                await self._settle(quiet=True)
                raise
            total += await self._settle()
            self.stats.last_tick_at = self.clock()
            return total

    async def _tick_once(self) -> bool:
        """Plan, write and publish one batch of due jobs; True when more are due already."""
        if self.lease is not None:
            self.lease.check()
        now = self.clock()
        now_ts = now.timestamp()
        due: list[Entry] = []
        while self.heap and self.heap[0][0] <= now_ts and len(due) < self.max_batch:
            item = heapq.heappop(self.heap)
            if not self._stale(item):
                due.append(self.entries[item[4]])
        if not due:
            return False
        previous = [entry.next_due for entry in due]
        try:
            await self._commit_and_send(self._plan_chunks(due, now))
        except BaseException:
            # The database or the broker failed: plan the same occurrences again next time.
            # Ids are deterministic, so whatever was committed is not planned twice, and what
            # was committed but not confirmed stays pending for republish_pending.
            for entry, next_due in zip(due, previous, strict=True):
                entry.next_due = next_due
            self._retry_pending = True
            raise
        finally:
            for entry in due:
                self._push(entry)
        return bool(self.heap) and self.heap[0][0] <= now_ts

    def _plan_chunks(self, due: list[Entry], now: datetime) -> list[_Chunk]:
        """The batch's occurrences in stream order, cut into chunks of ``plan_chunk``.

        Sorting the whole batch (not each chunk) keeps "earlier first, then higher priority"
        across chunk boundaries. A job's next time travels with the chunk holding its last
        occurrence, so it is never advanced in the database before all its occurrences are
        written (otherwise a crash in between would lose them).
        """
        planned: list[_Planned] = []
        for entry in due:
            self._plan(entry, now, planned)
        planned.sort(key=_stream_order)
        size = self.plan_chunk
        chunks = [_Chunk(planned[i : i + size]) for i in range(0, len(planned), size)]
        if not chunks:
            chunks.append(_Chunk([]))
        last_chunk = {p.job_id: i // size for i, p in enumerate(planned)}
        for entry in due:
            chunks[last_chunk.get(entry.id, 0)].next_runs.append((entry.id, entry.next_due))
        return chunks

    def _plan(self, entry: Entry, now: datetime, out: list[_Planned]) -> None:
        """Append the occurrences of one job due by ``now`` to ``out``; advances its next time."""
        times: list[datetime] = []
        at = entry.next_due
        while at is not None and at <= now and len(times) < MAX_CATCH_UP:
            times.append(at)
            at = entry.schedule.next_after(at)
        if at is not None and at <= now:
            at = entry.schedule.next_after(now)
        entry.next_due = at
        if len(times) == 1 and now - times[0] <= self.grace:  # the usual case: one, on time
            out.append(self._occurrence(entry, times[0], "pending", None))
            return
        on_time = [t for t in times if now - t <= self.grace]
        late = [t for t in times if now - t > self.grace]
        runs = on_time or late[-1:]
        coalesced = late if on_time else late[:-1]
        if coalesced:
            into = runs[0].isoformat()
            reason = f"coalesced into the occurrence of {into}: the scheduler was not running at its time"
            for t in coalesced:
                out.append(self._occurrence(entry, t, "coalesced", reason))
        for t in runs:
            out.append(self._occurrence(entry, t, "pending", None))

    @staticmethod
    def _occurrence(entry: Entry, at: datetime, state: str, reason: str | None) -> _Planned:
        return _Planned(
            id=occurrence_id(entry.id, at),
            job_id=entry.id,
            scheduled_for=at,
            priority=entry.priority,
            trigger="schedule",
            state=state,
            reason=reason,
            entry=entry,
        )

    async def _commit_and_send(self, chunks: list[_Chunk]) -> None:
        """Write chunk k+1 to the ledger while chunk k is published.

        An occurrence is published only once the transaction holding its ``pending`` row has
        committed, and only if that transaction inserted it. Confirmation and marking go to
        ``self._confirming``. On failure the write in flight is waited for, not cancelled: its
        rows are either committed (and republished as pending) or rolled back.
        """
        commit = asyncio.create_task(self._commit(chunks[0]))
        try:
            for following in [*chunks[1:], None]:
                to_send = await commit
                if following is not None:
                    commit = asyncio.create_task(self._commit(following))
                await self._send(to_send, self._confirming)
        finally:
            # Whatever happened, the last write started has finished before we return.
            await asyncio.gather(commit, return_exceptions=True)

    async def _commit(self, chunk: _Chunk) -> list[_Planned]:
        """Write one chunk; returns its occurrences to publish: new in the ledger and pending."""
        if self.lease is None:
            new_ids = await self.store.plan(chunk.occurrences, chunk.next_runs)
        else:
            fence = (self.lease.key, self.lease.token)
            new_ids = await self.store.plan(chunk.occurrences, chunk.next_runs, fence=fence)
        to_send = []
        for p in chunk.occurrences:
            if p.id in new_ids:
                if p.state == "pending":
                    to_send.append(p)
                elif p.state == "coalesced":
                    self.stats.coalesced += 1
        return to_send

    async def _send(self, batch: list[_Planned], confirming: list[asyncio.Task[int]]) -> None:
        """Publish ``batch`` in order without waiting for acks; a task added to ``confirming``
        waits for them and marks the confirmed occurrences ``dispatched``.

        The task is added even when publishing fails part-way, so the acks already requested
        are waited for (or cancelled, which frees the client's pending-publish slots).
        """
        if not batch:
            return
        headers = {}
        if self.lease is not None:
            self.lease.check()
            headers[FENCE_HEADER] = str(self.lease.token)
        dispatched_at = self.clock()
        publish = self.js.publish_async
        futures: list[asyncio.Future[Any]] = []
        try:
            for p in batch:
                entry = p.entry
                message = DueOccurrence(
                    occurrence_id=p.id,
                    run_id=run_id_for(p.id),
                    job_id=entry.id,
                    job_type=entry.type,
                    job_title=entry.title,
                    pool=entry.pool,
                    # Already-encoded JSON, written into the message as is (see _params_json).
                    params=msgspec.Raw(entry.params_json),  # type: ignore[arg-type]
                    priority=p.priority,
                    trigger=p.trigger,  # type: ignore[arg-type]
                    requested_by=p.requested_by,
                    scheduled_for=p.scheduled_for,
                    dispatched_at=dispatched_at,
                    timeout_s=entry.timeout_s,
                )
                futures.append(
                    await publish(
                        _due_subject(entry.pool, entry.type),
                        due_encoder.encode(message),
                        headers={**headers, "Nats-Msg-Id": p.id},
                    )
                )
        finally:
            if futures:
                confirming.append(
                    asyncio.create_task(
                        self._confirm(batch[: len(futures)], futures, dispatched_at)
                    )
                )

    async def _confirm(
        self, batch: list[_Planned], futures: list[asyncio.Future[Any]], dispatched_at: datetime
    ) -> int:
        """Wait for JetStream's acks, then mark what was confirmed ``dispatched``.

        What is not confirmed in time stays ``pending`` and is published again by
        ``republish_pending``; JetStream drops the copy it already has.
        """
        await _wait_all(futures, self.publish_timeout_s)
        confirmed = []
        for p, f in zip(batch, futures, strict=True):
            if not f.done():
                f.cancel()  # frees the client's pending-publish slot; the row stays pending
            elif not f.cancelled() and f.exception() is None:
                confirmed.append(p.id)
        failed = len(futures) - len(confirmed)
        if failed:
            self.stats.publish_failures += failed
            self._retry_pending = True
            log.warning(
                "some occurrences were not confirmed by JetStream; they stay pending and are retried",
                extra={"action": "dispatch.unconfirmed", "count": failed},
            )
        await self.store.mark_dispatched(confirmed, dispatched_at)
        self.stats.dispatched += len(confirmed)
        self.stats.lateness_ms = [
            (dispatched_at - p.scheduled_for).total_seconds() * 1000 for p in batch[-1000:]
        ]
        log.info(
            "occurrences dispatched",
            extra={"action": "dispatch.published", "count": len(confirmed), "unconfirmed": failed},
        )
        return len(confirmed)

    async def _settle(self, quiet: bool = False) -> int:
        """Wait for every confirmation task of this tick; returns how many were confirmed.

        Raises the first failure (a ``mark dispatched`` that did not reach the database: those
        occurrences stay pending and are republished), unless ``quiet``, when another failure is
        already on its way out and these are only logged.
        """
        tasks, self._confirming = self._confirming, []
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self._retry_pending = True
            if not quiet:
                raise errors[0]
            for error in errors:
                if not isinstance(error, asyncio.CancelledError):
                    log.warning(
                        "marking occurrences dispatched failed; they stay pending and are retried",
                        exc_info=error,
                        extra={"action": "dispatch.mark_failed"},
                    )
        return sum(r for r in results if isinstance(r, int))

    async def _publish(self, batch: list[_Planned]) -> int:
        """Publish ``batch`` and wait until it is confirmed and marked; returns the confirmed."""
        confirming: list[asyncio.Task[int]] = []
        try:
            await self._send(batch, confirming)
        finally:
            results = await asyncio.gather(*confirming)
        return sum(results)

    async def republish_pending(self) -> int:
        """Publish again what a crash or a broker outage left ``pending``."""
        total = 0
        incomplete = False
        while True:
            rows = await self.store.pending(partition=self.partition)
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
                        id=r["id"],
                        job_id=r["job_id"],
                        scheduled_for=r["scheduled_for"],
                        priority=r["priority"],
                        trigger=r["trigger"],
                        state="pending",
                        requested_by=r["requested_by"],
                        entry=entry,
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
        occ = _Planned(
            id=manual_occurrence_id(),
            job_id=entry.id,
            scheduled_for=now,
            priority=entry.priority,
            trigger="manual",
            state="pending",
            requested_by=requested_by,
            entry=entry,
        )
        async with self._lock:
            await self.store.plan([occ], [])
            sent = await self._publish([occ])
        if not sent:
            raise Unavailable(
                "JetStream did not confirm the run; it stays pending and is retried automatically"
            )
        return occ
