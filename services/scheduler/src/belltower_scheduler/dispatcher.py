"""Finds due occurrences and publishes them, exactly once each.

Jobs live in memory in a queue by their next due instant (``due.py``). Each tick takes what is
due, writes the occurrences to the ledger as ``pending`` together with the jobs' next times (one
transaction per chunk of ``PLAN_CHUNK``), publishes the new ones with ``Nats-Msg-Id`` =
occurrence id, then marks them ``dispatched``. The steps are pipelined, as the database and the
broker are separate processes that can work while this one does: chunk k+1 is written while
chunk k is published, and acks are awaited and marked in background tasks that the tick
settles before it returns. A chunk is only ever published after its own transaction committed.
A crash between those steps leaves ``pending`` rows that the next start publishes again;
JetStream drops the copy it already has, and workers and history de-duplicate on the same id. An occurrence that is already in the ledger is never published by the planner
again, so restarts and a second scheduler cannot double-dispatch.

Occurrences later than the misfire grace (the scheduler was down) are missed; each job's
catch-up policy decides which of them run (``latest``: the latest once, the others coalesced;
``all``: those within the catch-up window up to a maximum; ``skip``: none), and every one is
recorded with its reason, so none is lost silently.

When run events are tracked (:meth:`Dispatcher.track_runs`, fed by ``runs.RunTracker``), the
dispatcher knows each job's runs in flight and applies its overlap policy (``skip``, ``buffer``
one, ``allow``), releases buffered occurrences when the run before finishes, and plans chained
occurrences of jobs that run ``after`` another one.

With several replicas, a Dispatcher serves one partition of the jobs under a lease (see
``lease.py``): it loads and republishes only that partition, checks the lease before planning
and before publishing, and writes the ledger only under the lease's fencing token.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
from asyncpg import Record
from nats.js import JetStreamContext

from belltower import metrics, telemetry
from belltower.api import RunPolicy
from belltower.errors import Conflict, Unavailable
from belltower.events import (
    DueOccurrence,
    ResultMail,
    RunFinishedData,
    chained_occurrence_id,
    due_encoder,
    manual_occurrence_id,
    occurrence_id,
    run_id_for,
    skipped_occurrence_id,
    utcnow,
)
from belltower.schedule import (
    AFTER_END,
    DST_GAP_SKIPPED,
    NON_SCHOOL_DAY,
    OUTSIDE_WINDOW,
    WEEKDAY_FILTERED,
    CompiledSchedule,
    Schedule,
    compile_schedule,
    schedule_decoder,
    schedule_encoder,
)
from belltower.subjects import due_subject

from .due import DueQueue
from .lease import FENCE_HEADER, Deposed, Lease
from .publisher import CONFIRMED, Batch, BatchPublisher
from .store import (
    CalendarStore,
    Fence,
    JobRow,
    Occurrence,
    Partition,
    Store,
    decode_result_mail,
    policy_decoder,
)

log = logging.getLogger(__name__)

MAX_CATCH_UP = 10_000
_FINISHED_KEPT = 100_000

PLAN_CHUNK = 5_000
"""Occurrences per ledger transaction. A batch is written and published in chunks so that the
database writes one chunk while the previous one is being published: big enough that a
statement's round-trip is amortised, small enough that publishing starts early."""


@lru_cache(maxsize=65_536)
def _compiled(schedule_json: bytes, non_school_days: frozenset[date]) -> CompiledSchedule:
    """Jobs with the same schedule (and calendar days) share one compiled form."""
    return compile_schedule(
        msgspec.json.decode(schedule_json, type=Schedule), non_school_days=non_school_days
    )


def compiled_for(
    schedule: Schedule, non_school_days: frozenset[date] = frozenset()
) -> CompiledSchedule:
    return _compiled(schedule_encoder.encode(schedule), non_school_days)


@lru_cache(maxsize=65_536)
def compiled_for_text(schedule_text: str) -> CompiledSchedule:
    """The compiled form of a schedule as PostgreSQL prints it (jsonb prints equal values
    alike): loading a million jobs decodes each distinct schedule once, not once per job."""
    return compiled_for(schedule_decoder.decode(schedule_text))


_SKIP_CAUSES = {
    OUTSIDE_WINDOW: "outside_window",
    WEEKDAY_FILTERED: "weekday",
    NON_SCHOOL_DAY: "non_school_day",
    DST_GAP_SKIPPED: "dst_gap",
    AFTER_END: "end_passed",
}
"""The schedule's own skip reasons that the ledger records, and their stable cause codes."""

_due_subject = lru_cache(maxsize=1_024)(due_subject)
"""One subject string per (pool, type) instead of one formatted per message."""

_EMPTY_PARAMS = b"{}"


@lru_cache(maxsize=4_096)
def _policy(text: str) -> RunPolicy:
    """Jobs with the same policy share one (frozen) object."""
    return policy_decoder.decode(text)


@lru_cache(maxsize=4_096)
def _retry_wire(policy: RunPolicy) -> tuple[int, tuple[float, float, float], int]:
    """What a due message carries of a policy: retries, backoff, most deliveries."""
    b = policy.retry_backoff
    return policy.retries, (b.initial_s, b.factor, b.max_s), policy.deliveries


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "-"


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


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """What a job has in common with many others: its type, pool, priority, timeout, run
    policy, result mail and whether it is paused. Equal specs are one shared object (see
    :func:`job_spec`), so each :class:`Entry` holds one reference instead of seven."""

    type: str
    pool: str
    priority: int
    timeout_s: float | None
    policy: RunPolicy
    result_mail: ResultMail | None
    paused: bool


@lru_cache(maxsize=4_096, typed=True)
def job_spec(
    job_type: str,
    pool: str,
    priority: int,
    timeout_s: float | None,
    policy: RunPolicy,
    result_mail: ResultMail | None,
    paused: bool,
) -> EntrySpec:
    """The shared spec for these values (typed: a timeout of 1.0 stays a float on the wire)."""
    return EntrySpec(
        sys.intern(job_type), sys.intern(pool), priority, timeout_s, policy, result_mail, paused
    )


@lru_cache(maxsize=4_096, typed=True)
def _spec_from_text(
    job_type: str,
    pool: str,
    priority: int,
    timeout_s: float | None,
    policy: str,
    result_mail: str | None,
    paused: bool,
) -> EntrySpec:
    """:func:`job_spec` from the columns as a ``scheduler.jobs`` record holds them: a million
    rows with a handful of distinct combinations decode each policy and result mail once."""
    return job_spec(
        job_type,
        pool,
        priority,
        timeout_s,
        _policy(policy),
        decode_result_mail(result_mail),
        paused,
    )


@dataclass(slots=True)
class Entry:
    """What the dispatcher keeps in memory about one job: up to a million of these live at once.

    Only what differs from job to job has a slot of its own; the rest is the shared ``spec``,
    read through properties of the same names. ``queued`` is the due-queue bucket the entry is
    waiting in (see ``due.py``), or None.
    """

    id: str
    title: str
    params_json: bytes
    schedule: CompiledSchedule
    next_due: datetime | None
    spec: EntrySpec
    queued: list[Entry] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def pool(self) -> str:
        return self.spec.pool

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def timeout_s(self) -> float | None:
        return self.spec.timeout_s

    @property
    def policy(self) -> RunPolicy:
        return self.spec.policy

    @property
    def result_mail(self) -> ResultMail | None:
        return self.spec.result_mail

    @property
    def paused(self) -> bool:
        return self.spec.paused

    @classmethod
    def from_row(cls, row: JobRow) -> Entry:
        return cls(
            id=row.id,
            title=row.title,
            params_json=_params_json(row.params),
            schedule=compiled_for(row.schedule),
            next_due=row.next_run_at,
            spec=job_spec(
                row.type,
                row.pool,
                row.priority,
                row.timeout_s,
                row.policy,
                row.result_mail,
                row.paused,
            ),
        )

    @classmethod
    def from_record(cls, r: Record) -> Entry:
        """Straight from a ``scheduler.jobs`` record (see ``Store.job_pages``), without a JobRow.

        Params stay encoded; the spec is shared with every job that has the same values.
        """
        return cls(
            r["id"],
            r["title"],
            _params_json(r["params"]),
            compiled_for_text(r["schedule"]),
            r["next_run_at"],
            _spec_from_text(
                r["type"],
                r["pool"],
                r["priority"],
                r["timeout_s"],
                r["policy"],
                r["result_mail"],
                r["paused"],
            ),
        )


_loads_collecting_paused = 0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while jobs are loaded.

    Every Entry is a tracked container that lives on, so each collection during a load walks
    all the entries loaded so far without finding garbage: at a million jobs that was about
    40% of the load time. Loading makes little cyclic garbage, and it is collected once the
    collector runs again. Loads can overlap (one per partition), so the last one to finish
    restarts it, and only if it was running before.
    """
    global _loads_collecting_paused
    if _loads_collecting_paused == 0 and not gc.isenabled():
        yield  # someone else turned it off; leave it as it is
        return
    _loads_collecting_paused += 1
    gc.disable()
    try:
        yield
    finally:
        _loads_collecting_paused -= 1
        if _loads_collecting_paused == 0:
            gc.enable()


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


def _stream_order(p: _Planned) -> tuple[datetime, int]:
    """Publication order: by scheduled instant, and within an instant higher priority first."""
    return (p.scheduled_for, -p.priority)


@dataclass(slots=True)
class _Sent:
    """A published batch whose acknowledgements are still to be looked at."""

    batch: list[_Planned]
    acks: Batch
    dispatched_at: datetime


@dataclass(slots=True)
class _Claims:
    """Occurrences decided in one batch of run events or releases, before the ledger has them:
    jobs given a run that is about to start (job id -> what it is) and jobs given a buffered one,
    so a second occurrence of the same batch sees them under the overlap policy."""

    going: dict[str, str] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)


@dataclass
class DispatchStats:
    """Counters for the metrics: ``skipped`` by cause, ``missed`` by catch-up policy (coalesced
    occurrences count as missed under ``latest``)."""

    dispatched: int = 0
    coalesced: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
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
        stale_run_s: float = 86_400.0,
        partition: Partition | None = None,
        lease: Lease | None = None,
        publisher: BatchPublisher | None = None,
    ) -> None:
        self.store = store
        self.js = js
        # nats-py's JetStreamContext has no public accessor for its connection.
        self.publisher = publisher or BatchPublisher(js._nc, stall_s=publish_timeout_s)
        self.grace = timedelta(seconds=misfire_grace_s)
        self.max_batch = max_batch
        self.plan_chunk = plan_chunk
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.queue = DueQueue(self.entries)
        self.wake = asyncio.Event()
        self.stats = DispatchStats()
        self._retry_pending = True
        self._lock = asyncio.Lock()
        self._sent: list[_Sent] = []
        """Batches published this tick, confirmed and marked once the tick has published all."""
        self.tracking_runs = False
        self.stale_run = timedelta(seconds=stale_run_s)
        self.in_flight: dict[str, dict[str, datetime]] = {}
        """Job id -> its occurrences dispatched and not finished (id -> scheduled instant)."""
        self.waiting: dict[str, str] = {}
        """Job id -> its occurrence buffered behind a run in flight (overlap: buffer)."""
        self.delayed: list[tuple[float, str, str]] = []
        """Heap of chained occurrences waiting for their delay: (due timestamp, id, job id)."""
        self.chained: dict[str, list[str]] = {}
        """Upstream job id -> ids of the jobs that run after it."""
        self.calendar_days: dict[str, frozenset[date]] = {}
        self._next_memo: dict[tuple[int, datetime], tuple[datetime | None, list[Any]]] = {}
        """Within one planning pass: (compiled schedule's id, instant) -> its next runnable."""
        self.partition = partition
        self.lease = lease
        self._finished_recently: dict[str, None] = {}
        """Occurrences whose finished event was applied (the latest ``_FINISHED_KEPT``), so that
        :meth:`adopt` does not take a run that finished meanwhile for one in flight."""

    # -- the set of jobs ----------------------------------------------------------------------

    async def load(self) -> int:
        """Fill the dispatcher from the jobs table, one cursor page at a time.

        The cyclic garbage collector is paused meanwhile (see :func:`_collector_paused`).
        """
        now = self.clock()
        count = 0
        self.calendar_days = await CalendarStore(self.store.pool).all_days()
        entries = self.entries
        push = self.queue.push
        with _collector_paused():
            async for records in self.store.job_pages(partition=self.partition):
                for record in records:
                    entry = Entry.from_record(record)
                    if entry.next_due is None and not entry.paused:
                        entry.schedule = self.calendared(entry.schedule)
                        entry.next_due = entry.schedule.next_after(now)
                    if (
                        entry.schedule.schedule.calendar is None
                        and entry.spec.policy.after is None
                        and entry.id not in entries
                    ):
                        entries[entry.id] = entry  # what put() comes to for most jobs
                        push(entry)
                    else:
                        self.put(entry)
                count += len(records)
        self.wake.set()
        return count

    async def track_runs(self) -> datetime | None:
        """Start applying the overlap and chaining policies: load what the ledger holds back.

        Returns the instant from which run events must be replayed to catch up with runs that
        finished while this scheduler was not listening (the oldest dispatch still in flight, or
        the oldest pending occurrence, which a crash may have left published and unmarked), or
        None when nothing is in flight.
        """
        self.tracking_runs = True
        oldest: datetime | None = None
        for r in await self.store.held(min(self.clock(), utcnow()) - self.stale_run):
            if r["state"] == "dispatched":
                self.in_flight.setdefault(r["job_id"], {})[r["id"]] = r["scheduled_for"]
                at = r["dispatched_at"] or r["scheduled_for"]
                oldest = at if oldest is None or at < oldest else oldest
            elif r["state"] == "pending":  # republish_pending puts it in flight, unless it ran
                at = r["dispatched_at"]
                oldest = at if oldest is None or at < oldest else oldest
            elif r["state"] == "waiting":
                self.waiting[r["job_id"]] = r["id"]
            else:
                heapq.heappush(self.delayed, (r["scheduled_for"].timestamp(), r["id"], r["job_id"]))
        self.wake.set()
        return oldest

    def calendared(self, compiled: CompiledSchedule) -> CompiledSchedule:
        """The schedule with its school calendar's non-school days (schedule engine hook)."""
        name = compiled.schedule.calendar
        if name is None:
            return compiled
        return compiled_for(compiled.schedule, self.calendar_days.get(name, frozenset()))

    def set_calendar(self, name: str, days: frozenset[date]) -> None:
        """A calendar's days changed: jobs using it are re-planned from now (schedule engine hook)."""
        self.calendar_days[name] = days
        now = self.clock()
        for entry in list(self.entries.values()):
            if entry.schedule.schedule.calendar == name:
                entry.schedule = self.calendared(entry.schedule)
                if entry.next_due is not None and entry.next_due > now:
                    entry.next_due = entry.schedule.next_after(now)
                self.put(entry)

    def put(self, entry: Entry) -> None:
        """Add or replace a job; a replaced entry's queued item becomes stale."""
        entry.schedule = self.calendared(entry.schedule)
        previous = self.entries.get(entry.id)
        self.entries[entry.id] = entry
        if previous is not None and previous.policy.after is not None:
            self._unchain(previous)
        if entry.policy.after is not None:
            self.chained.setdefault(entry.policy.after.job, []).append(entry.id)
        self._push(entry)
        self.wake.set()

    def remove(self, job_id: str) -> None:
        entry = self.entries.pop(job_id, None)
        if entry is not None and entry.policy.after is not None:
            self._unchain(entry)

    def _unchain(self, entry: Entry) -> None:
        assert entry.policy.after is not None
        followers = self.chained.get(entry.policy.after.job, [])
        if entry.id in followers:
            followers.remove(entry.id)

    def _push(self, entry: Entry) -> None:
        self.queue.push(entry)

    def _fence(self) -> Fence | None:
        """What every ledger write of this dispatcher is fenced by: its lease's key and token
        (:class:`Deposed`, writing nothing, once another replica holds the partition), or None
        without a lease (a lone scheduler, or run-now for a partition held elsewhere)."""
        return None if self.lease is None else (self.lease.key, self.lease.token)

    # -- the loop -----------------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            self.wake.clear()
            try:
                await self.tick()
            except Deposed as exc:
                log.warning(str(exc), extra={"action": "dispatch.deposed"})
                if self.lease is not None:
                    self.lease.depose()  # nothing more is planned or published under it
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
        first = self.queue.first()
        until_due = max(0.0, first - time.time()) if first is not None else 60.0
        if self.delayed:
            until_due = min(until_due, max(0.0, self.delayed[0][0] - time.time()))
        return min(until_due, 2.0) if self._retry_pending else until_due

    async def tick(self) -> int:
        """Dispatch everything due now; returns how many occurrences were published.

        Everything due is written and published first; JetStream's acknowledgements are then
        looked at and the confirmed occurrences marked ``dispatched``, before the tick returns.
        Marking is bookkeeping: doing it after the last publish keeps the process's CPU and the
        database for getting the work out (a crash in between leaves the rows ``pending``, and
        their republication is de-duplicated by JetStream).
        """
        async with self._lock:
            if self.delayed and self.delayed[0][0] <= self.clock().timestamp():
                await self._release_delayed()
            total = await self.republish_pending() if self._retry_pending else 0
            try:
                while await self._tick_once():
                    pass
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    # Shutting down: do not wait for acks; unmarked rows stay pending.
                    self._abandon_sent()
                else:
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
        due = self.queue.take(now_ts, self.max_batch)
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
        return self.queue.due_by(now_ts)

    def _plan_chunks(self, due: list[Entry], now: datetime) -> list[_Chunk]:
        """The batch's occurrences in stream order, cut into chunks of ``plan_chunk``.

        Sorting the whole batch (not each chunk) keeps "earlier first, then higher priority"
        across chunk boundaries. A job's next time travels with the chunk holding its last
        occurrence, so it is never advanced in the database before all its occurrences are
        written (otherwise a crash in between would lose them).
        """
        planned: list[_Planned] = []
        self._next_memo.clear()
        try:
            for entry in due:
                self._plan(entry, now, planned)
        finally:
            self._next_memo.clear()
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
        """Append the occurrences of one job due by ``now`` to ``out``; advances its next time.

        Which of them run is the job's catch-up policy (for those later than the misfire
        grace) and then its overlap policy (against runs dispatched before this batch); every
        other one is appended with the state and reason the ledger keeps.
        """
        times: list[datetime] = []
        at = entry.next_due
        while at is not None and at <= now and len(times) < MAX_CATCH_UP:
            times.append(at)
            at = self._next(entry, at, out)
        beyond = at if at is not None and at <= now else None
        if beyond is not None:
            at = self._next(entry, now, out)
        entry.next_due = at
        blocked = (
            self.tracking_runs
            and entry.policy.overlap != "allow"
            and entry.id in self.in_flight
            and self._still_going(entry.id, now)
        )
        if len(times) == 1 and now - times[0] <= self.grace and not blocked:  # the usual case
            out.append(self._occurrence(entry, times[0], "pending", None))
            return
        on_time = [t for t in times if now - t <= self.grace]
        runs = self._catch_up(entry, now, [t for t in times if now - t > self.grace], on_time, out)
        if beyond is not None:
            out.append(
                self._occurrence(
                    entry,
                    beyond,
                    "missed",
                    f"missed, with every later occurrence up to {_when(now)} (not listed one by one): "
                    f"the scheduler was not running and more than {MAX_CATCH_UP:,} occurrences were due",
                    "catch_up",
                )
            )
        if blocked:
            runs = self._overlap(entry, runs, out)
        for t in runs:
            out.append(self._occurrence(entry, t, "pending", None))

    def _next(self, entry: Entry, after: datetime, out: list[_Planned]) -> datetime | None:
        """The job's next runnable instant after ``after``; the occurrences its schedule skips on
        the way (outside the window, a filtered weekday, a non-school day, a DST gap) go to
        ``out`` as ledger rows, so `jobs why` can say why nothing ran then."""
        # Jobs sharing a schedule and a due time (everything at 07:00) share the answer.
        key = (id(entry.schedule), after)
        found = self._next_memo.get(key)
        if found is None:
            found = self._next_memo[key] = entry.schedule.next_runnable(after)
        at, skipped = found
        for occ in skipped:
            cause = _SKIP_CAUSES.get(occ.skipped or "")
            if cause is None:
                continue
            out.append(
                _Planned(
                    id=skipped_occurrence_id(entry.id, occ.nominal),
                    job_id=entry.id,
                    scheduled_for=occ.nominal,
                    priority=entry.priority,
                    trigger="schedule",
                    state="skipped",
                    reason=f"skipped: {occ.skipped} ({occ.rule})",
                    cause=cause,
                    entry=entry,
                )
            )
        return at

    def _still_going(self, job_id: str, now: datetime) -> bool:
        """Whether a run of the job is in flight; runs older than ``stale_run_s`` are forgotten,
        as their finished event may never come (no worker for the pool, an expired message)."""
        going = self.in_flight[job_id]
        for occ_id, at in list(going.items()):
            if now - at > self.stale_run:
                del going[occ_id]
                log.warning(
                    "a run in flight for too long no longer holds back its job",
                    extra={
                        "action": "dispatch.stale_run",
                        "job_id": job_id,
                        "occurrence_id": occ_id,
                    },
                )
        if not going:
            del self.in_flight[job_id]
        return bool(going)

    def _catch_up(
        self,
        entry: Entry,
        now: datetime,
        late: list[datetime],
        on_time: list[datetime],
        out: list[_Planned],
    ) -> list[datetime]:
        """Record the late occurrences the job's catch-up policy does not run; returns the runs."""
        if not late:
            return on_time
        policy = entry.policy
        end = entry.schedule.schedule.end
        down = "the scheduler was not running at its time"
        if end is not None and now > end:
            for t in late:
                out.append(
                    self._occurrence(
                        entry, t, "skipped",
                        f"skipped: {down}, and when it was found the schedule had ended ({_when(end)})",
                        "end_passed",
                    )
                )  # fmt: skip
            return on_time
        if policy.catch_up == "skip":
            for t in late:
                out.append(
                    self._occurrence(
                        entry, t, "missed", f"missed: {down}; the job's catch-up policy is skip", "catch_up"
                    )
                )  # fmt: skip
            return on_time
        if policy.catch_up == "all":
            window = timedelta(seconds=policy.catch_up_window_s)
            in_window = [t for t in late if now - t <= window]
            runs = in_window[-policy.catch_up_max :] if policy.catch_up_max > 0 else []
            kept = set(runs)
            for t in late:
                if t in kept:
                    continue
                why = (
                    f"more than the catch-up window ({policy.catch_up_window_s:g}s) late when found"
                    if now - t > window
                    else f"catch-up runs at most {policy.catch_up_max} missed occurrences, the latest ones"
                )
                out.append(
                    self._occurrence(entry, t, "missed", f"missed: {down}; {why}", "catch_up")
                )
            return runs + on_time
        runs = on_time or late[-1:]
        into = runs[0].isoformat()
        reason = f"coalesced into the occurrence of {into}: {down}"
        for t in late if on_time else late[:-1]:
            out.append(self._occurrence(entry, t, "coalesced", reason, "catch_up"))
        return runs

    def _overlap(self, entry: Entry, runs: list[datetime], out: list[_Planned]) -> list[datetime]:
        """A run of the job is still going: skip the runs, or buffer the latest one."""
        if not runs:
            return runs
        going = self.in_flight[entry.id]
        first = min(going.values())
        what = f"the run of {_when(first)} was still going" + (
            f" (and {len(going) - 1} more)" if len(going) > 1 else ""
        )
        keep: list[datetime] = []
        if entry.policy.overlap == "buffer" and entry.id not in self.waiting:
            keep = runs[-1:]
            runs = runs[:-1]
        why = (
            "overlap: skip"
            if entry.policy.overlap == "skip"
            else "overlap: buffer holds one, and one was waiting already"
        )
        for t in runs:
            out.append(self._occurrence(entry, t, "skipped", f"skipped: {what} ({why})", "overlap"))
        for t in keep:
            out.append(
                self._occurrence(
                    entry, t, "waiting",
                    f"buffered: {what}; it runs when that run finishes (overlap: buffer)",
                    "overlap",
                )
            )  # fmt: skip
        return []

    @staticmethod
    def _occurrence(
        entry: Entry, at: datetime, state: str, reason: str | None, cause: str | None = None
    ) -> _Planned:
        return _Planned(
            id=occurrence_id(entry.id, at),
            job_id=entry.id,
            scheduled_for=at,
            priority=entry.priority,
            trigger="schedule",
            state=state,
            reason=reason,
            cause=cause,
            entry=entry,
        )

    async def _commit_and_send(self, chunks: list[_Chunk]) -> None:
        """Write chunk k+1 to the ledger while chunk k is published.

        An occurrence is published only once the transaction holding its ``pending`` row has
        committed, and only if that transaction inserted it. What was published goes to
        ``self._sent``, for ``_settle``. On failure the write in flight is waited for, not cancelled: its
        rows are either committed (and republished as pending) or rolled back.
        """
        commit = asyncio.create_task(self._commit(chunks[0]))
        try:
            for following in [*chunks[1:], None]:
                to_send = await commit
                if following is not None:
                    commit = asyncio.create_task(self._commit(following))
                await self._send(to_send, self._sent)
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
        tracking = self.tracking_runs
        for p in chunk.occurrences:
            if p.id in new_ids:
                if p.state == "pending":
                    to_send.append(p)
                    if tracking:
                        self.in_flight.setdefault(p.job_id, {})[p.id] = p.scheduled_for
                elif p.state == "coalesced":
                    self.stats.coalesced += 1
                    self._count(self.stats.missed, "latest")
                    metrics.OCCURRENCES_MISSED.labels("latest").inc()
                elif p.state == "missed":
                    self._count(self.stats.missed, p.entry.policy.catch_up)
                    metrics.OCCURRENCES_MISSED.labels(p.entry.policy.catch_up).inc()
                elif p.state == "skipped":
                    self._count(self.stats.skipped, p.cause or "other")
                    metrics.OCCURRENCES_SKIPPED.labels(p.cause or "other").inc()
                elif p.state == "waiting":
                    self.waiting[p.job_id] = p.id
        return to_send

    @staticmethod
    def _count(counter: dict[str, int], key: str) -> None:
        counter[key] = counter.get(key, 0) + 1

    async def _send(self, batch: list[_Planned], sent: list[_Sent]) -> None:
        """Publish ``batch`` in order without waiting for acks; what was published is added to
        ``sent``, for ``_confirm`` to wait for its acks and mark it ``dispatched``.

        It is added even when publishing fails part-way, so the acks already requested are
        waited for (or given up, which frees their place in the publisher's window).
        """
        if not batch:
            return
        headers = {}
        if self.lease is not None:
            self.lease.check()
            headers[FENCE_HEADER] = str(self.lease.token)
        dispatched_at = self.clock()
        publisher = self.publisher
        acks = publisher.batch()
        try:
            for p in batch:
                entry = p.entry
                retries, backoff, deliveries = _retry_wire(entry.policy)
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
                    result_mail=entry.result_mail,
                    requested_from=p.requested_from,
                    retries=retries,
                    backoff_s=backoff,
                    max_deliveries=deliveries,
                )
                subject = _due_subject(entry.pool, entry.type)
                await publisher.publish(
                    acks,
                    subject,
                    due_encoder.encode(message),
                    {**headers, **telemetry.producer_headers(subject, p.id)},
                )
        finally:
            if acks.outcome:
                sent.append(_Sent(batch[: len(acks.outcome)], acks, dispatched_at))
            else:
                publisher.forget(acks)

    async def _confirm(self, sent: _Sent) -> int:
        """Wait for JetStream's acks, then mark what was confirmed ``dispatched``.

        What is not confirmed in time stays ``pending`` and is published again by
        ``republish_pending``; JetStream drops the copy it already has.
        """
        batch, acks, dispatched_at = sent.batch, sent.acks, sent.dispatched_at
        try:
            await acks.wait(self.publish_timeout_s)
        finally:
            self.publisher.forget(acks)  # what is unacknowledged now stays pending
        outcome = acks.outcome
        confirmed = [p.id for p, o in zip(batch, outcome, strict=True) if o == CONFIRMED]
        failed = len(batch) - len(confirmed)
        if failed:
            self.stats.publish_failures += failed
            self._retry_pending = True
            log.warning(
                "some occurrences were not confirmed by JetStream; they stay pending and are retried",
                extra={
                    "action": "dispatch.unconfirmed",
                    "count": failed,
                    "refused": acks.refused,
                    "first_error": acks.errors[0] if acks.errors else None,
                },
            )
        await self.store.mark_dispatched(confirmed, dispatched_at, fence=self._fence())
        self.stats.dispatched += len(confirmed)
        metrics.record_dispatched(batch, outcome, dispatched_at)
        self.stats.lateness_ms = [
            (dispatched_at - p.scheduled_for).total_seconds() * 1000 for p in batch[-1000:]
        ]
        log.info(
            "occurrences dispatched",
            extra={"action": "dispatch.published", "count": len(confirmed), "unconfirmed": failed},
        )
        return len(confirmed)

    async def _settle(self, quiet: bool = False) -> int:
        """Confirm and mark every batch published this tick; returns how many were confirmed.

        Raises the first failure (a ``mark dispatched`` that did not reach the database: those
        occurrences stay pending and are republished), unless ``quiet``, when another failure is
        already on its way out and these are only logged.
        """
        sent, self._sent = self._sent, []
        results = await asyncio.gather(*map(self._confirm, sent), return_exceptions=True)
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

    def _abandon_sent(self) -> None:
        """Stop waiting for the acks of this tick's batches (shutting down): the client's
        pending-publish slots are freed, and the rows stay ``pending`` for the next start."""
        sent, self._sent = self._sent, []
        for batch in sent:
            self.publisher.forget(batch.acks)

    async def _publish(self, batch: list[_Planned]) -> int:
        """Publish ``batch`` and wait until it is confirmed and marked; returns the confirmed."""
        sent: list[_Sent] = []
        try:
            await self._send(batch, sent)
        finally:
            results = await asyncio.gather(*map(self._confirm, sent))
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
                orphans,
                "the job was deleted before this occurrence was dispatched",
                fence=self._fence(),
            )
            metrics.OCCURRENCES_SKIPPED.labels("job_deleted").inc(len(orphans))
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
                        requested_from=r["requested_from"],
                        chained_from=r["chained_from"],
                        entry=entry,
                    )
                )
                # Published before a crash and already run (the replay of run events said so):
                # JetStream drops the copy, and its run holds nothing back.
                if self.tracking_runs and r["run_status"] in (None, "running"):
                    self.in_flight.setdefault(r["job_id"], {})[r["id"]] = r["scheduled_for"]
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

    async def run_now(
        self,
        entry: Entry,
        requested_by: str | None,
        requested_from: str | None = None,
        *,
        force: bool = False,
    ) -> Occurrence:
        """Dispatch one extra occurrence of a job now, outside its schedule.

        While a run of the job is still going (as the ledger says, whichever replica dispatched
        it), its overlap policy applies: ``skip`` refuses with :class:`Conflict` naming that run,
        ``buffer`` queues this one as the job's waiting occurrence (state ``waiting``, released
        when the run finishes) unless one waits already, ``allow`` runs at once. ``force`` runs
        at once whatever the policy. Every outcome is a ledger row, so `jobs why` explains it.
        """
        now = self.clock().astimezone(UTC)
        occ = _Planned(
            id=manual_occurrence_id(),
            job_id=entry.id,
            scheduled_for=now,
            priority=entry.priority,
            trigger="manual",
            state="pending",
            requested_by=requested_by,
            requested_from=requested_from,
            entry=entry,
        )
        async with self._lock:
            refusal = None
            if entry.policy.overlap != "allow":
                refusal = await self._manual_overlap(entry, occ, now, force)
            await self.store.plan([occ], [], fence=self._fence())
            if refusal is not None:
                self._count(self.stats.skipped, "overlap")
                metrics.OCCURRENCES_SKIPPED.labels("overlap").inc()
                raise Conflict(refusal)
            if occ.state == "waiting":
                if self.tracking_runs:
                    self.waiting[entry.id] = occ.id
                return occ
            if self.tracking_runs:
                self.in_flight.setdefault(entry.id, {})[occ.id] = now
            sent = await self._publish([occ])
        if not sent:
            raise Unavailable(
                "JetStream did not confirm the run; it stays pending and is retried automatically"
            )
        return occ

    async def _manual_overlap(
        self, entry: Entry, occ: _Planned, now: datetime, force: bool
    ) -> str | None:
        """Apply the overlap policy to a run-now: sets ``occ``'s state and reason; returns the
        refusal to give the person asking, or None when it runs (now, or buffered)."""
        rows = await self.store.unfinished(entry.id, now - self.stale_run)
        going = [r for r in rows if r["state"] in ("pending", "dispatched")]
        waiting = next((r for r in rows if r["state"] == "waiting"), None)
        if self.tracking_runs:
            # The holder goes by the runs it follows, as for scheduled occurrences: the ledger's
            # run status may lag behind or have missed an event that the run tracker applied.
            going, waiting = self._tracked(entry.id, now, rows)
        if not going:
            return None
        first = going[0]
        run = run_id_for(first["id"])
        status = "running" if first["run_status"] == "running" else "not started by a worker yet"
        when = _when(first["dispatched_at"] or first["scheduled_for"])
        trigger = f"{first['trigger']}, " if first["trigger"] else ""
        what = f"run {run} of this job ({trigger}dispatched {when}, {status})" + (
            f" and {len(going) - 1} more" if len(going) > 1 else ""
        )
        # Who asked is in the row's requested_by and requested_from, and `jobs why` shows them.
        if force:
            occ.reason = (
                f"forced: {what} was still going (overlap: {entry.policy.overlap}, overridden)"
            )
            occ.cause = "overlap_overridden"
            return None
        if entry.policy.overlap == "buffer" and waiting is None:
            occ.state = "waiting"
            occ.cause = "overlap"
            occ.reason = f"buffered: {what} was still going; it runs when that run finishes (overlap: buffer)"
            return None
        occ.state = "skipped"
        occ.cause = "overlap"
        why = (
            "its overlap policy is skip"
            if entry.policy.overlap == "skip"
            else f"its overlap policy is buffer and occurrence {waiting['id'] if waiting else '?'} "
            "already waits for it"
        )
        occ.reason = f"refused: {what} was still going (overlap: {entry.policy.overlap})"
        return (
            f"not run: {what} is still going, and {why}. Wait for it to finish "
            f"(`belltower runs show {run}`), or run anyway with `belltower jobs run-now --force "
            f"{entry.id}` (API: force=true)"
        )

    def _tracked(
        self, job_id: str, now: datetime, rows: list[Record]
    ) -> tuple[list[Any], Any | None]:
        """The job's runs in flight and buffered occurrence as this dispatcher follows them,
        described by their ledger rows where it has them."""
        by_id: dict[str, Any] = {r["id"]: r for r in rows}
        going: list[Any] = []
        if job_id in self.in_flight and self._still_going(job_id, now):
            for occ_id, at in sorted(self.in_flight[job_id].items(), key=lambda item: item[1]):
                going.append(by_id.get(occ_id) or {
                    "id": occ_id, "state": "dispatched", "trigger": None, "scheduled_for": at,
                    "dispatched_at": None, "run_status": None,
                })  # fmt: skip
        waiting_id = self.waiting.get(job_id)
        return going, (by_id.get(waiting_id) or {"id": waiting_id}) if waiting_id else None

    async def adopt(self, job_id: str) -> None:
        """Learn what another replica wrote for one of this dispatcher's jobs (a run-now it
        answered): its runs in flight and its buffered occurrence, so that the overlap policy
        holds back this job's next occurrences and the buffered one is released when they finish.
        """
        if not self.tracking_runs or job_id not in self.entries:
            return
        now = self.clock()
        rows = await self.store.unfinished(job_id, now - self.stale_run)
        for r in rows:
            if r["state"] == "waiting":
                self.waiting[job_id] = r["id"]
            elif r["id"] not in self._finished_recently:
                self.in_flight.setdefault(job_id, {})[r["id"]] = r["scheduled_for"]
        waiting = self.waiting.get(job_id)
        if waiting is not None and not (
            job_id in self.in_flight and self._still_going(job_id, now)
        ):
            # What it waited for finished before we learnt of it: it runs now.
            del self.waiting[job_id]
            async with self._lock:
                await self.store.release([waiting], fence=self._fence())
            self._retry_pending = True
            self.wake.set()

    # -- run events: overlap and chaining -------------------------------------------------------

    async def runs_finished(self, finished: list[RunFinishedData]) -> None:
        """What finished runs change: the ledger's run status, buffered runs released, chained
        occurrences planned.

        Chained occurrences are written before the runs are recorded, and their ids derive from
        the upstream occurrence, so a replayed or redelivered event never chains twice. Every
        write is fenced by the lease: a deposed leader gets :class:`Deposed` and writes nothing,
        and its in-memory changes are dropped with it (see ``runs.py`` for why a standby keeps
        no such state and how the new leader still gets the events).
        """
        if not finished:
            return
        now = self.clock()
        chained: list[_Planned] = []
        released: list[str] = []
        claims = _Claims()
        # What this changes in memory, put back if the ledger writes fail: the events are
        # handed over again (runs.py), and must find the same runs in flight and buffered.
        popped: list[tuple[str, str, datetime]] = []
        unbuffered: list[tuple[str, str]] = []
        paused: list[str] = []  # buffered occurrences of jobs paused meanwhile: not run
        for data in finished:
            self._finished_recently[data.occurrence_id] = None
            if len(self._finished_recently) > _FINISHED_KEPT:
                del self._finished_recently[next(iter(self._finished_recently))]
            going = self.in_flight.get(data.job_id)
            if going is not None:
                at = going.pop(data.occurrence_id, None)
                if at is not None:
                    popped.append((data.job_id, data.occurrence_id, at))
                if not going:
                    del self.in_flight[data.job_id]
                    waiting = self.waiting.pop(data.job_id, None)
                    job = self.entries.get(data.job_id)
                    if waiting is not None and job is not None and job.paused:
                        unbuffered.append((data.job_id, waiting))
                        paused.append(waiting)
                    elif waiting is not None:
                        unbuffered.append((data.job_id, waiting))
                        released.append(waiting)
                        claims.going[data.job_id] = (
                            f"its buffered occurrence {waiting} was starting"
                        )
            for follower in self.chained.get(data.job_id, ()):
                entry = self.entries.get(follower)
                if entry is not None and entry.policy.after is not None:
                    planned = self._chain(entry, data, now, claims)
                    if planned is not None:
                        chained.append(planned)
        try:
            await self._apply_finished(finished, chained, released, paused)
        except BaseException:
            for job_id, occ_id, at in popped:
                self.in_flight.setdefault(job_id, {})[occ_id] = at
            for job_id, occ_id in unbuffered:
                self.waiting.setdefault(job_id, occ_id)
            raise
        if self._retry_pending or chained:
            self.wake.set()  # the loop's sleep is recomputed, with the delayed occurrences

    async def _apply_finished(
        self,
        finished: list[RunFinishedData],
        chained: list[_Planned],
        released: list[str],
        paused: list[str],
    ) -> None:
        """The ledger writes of :meth:`runs_finished`, and what they make due or held."""
        async with self._lock:
            # Whether or not this replica's write was the first (another replica follows the
            # same events), the occurrences are published from the ledger's state: releasing
            # is idempotent, and pending rows are published once, de-duplicated by their id.
            if chained:
                new = await self.store.plan(chained, [], fence=self._fence())
                for p in chained:
                    if p.state == "delayed":
                        heapq.heappush(self.delayed, (p.scheduled_for.timestamp(), p.id, p.job_id))
                    elif p.state == "pending":
                        self._retry_pending = True
                        if p.id in new:  # in flight from now: a later event's chain sees it
                            self.in_flight.setdefault(p.job_id, {})[p.id] = p.scheduled_for
                    elif p.state == "waiting" and p.id in new:
                        self.waiting[p.job_id] = p.id
                    elif p.state == "skipped" and p.id in new and p.cause == "overlap":
                        self._count(self.stats.skipped, "overlap")
                        metrics.OCCURRENCES_SKIPPED.labels("overlap").inc()
            if paused:
                await self.store.mark_skipped(
                    paused,
                    "skipped: the job was paused when the run it was buffered behind finished",
                    cause="paused",
                    fence=self._fence(),
                )
                self.stats.skipped["paused"] = self.stats.skipped.get("paused", 0) + len(paused)
                metrics.OCCURRENCES_SKIPPED.labels("paused").inc(len(paused))
            if released:
                self._retry_pending = True
                for occ_id in await self.store.release(released, fence=self._fence()):
                    log.info(
                        "buffered occurrence released",
                        extra={"action": "dispatch.released", "occurrence_id": occ_id},
                    )
            await self.store.record_runs(
                [(d.occurrence_id, d.status, d.error, d.finished_at) for d in finished],
                fence=self._fence(),
            )

    async def runs_started(self, occurrence_ids: list[str]) -> None:
        """Record that runs started, so the ledger can say "running"."""
        await self.store.record_runs(
            [(i, "running", None, None) for i in occurrence_ids], fence=self._fence()
        )

    def _chain(
        self, entry: Entry, upstream: RunFinishedData, now: datetime, claims: _Claims
    ) -> _Planned | None:
        """The occurrence of ``entry`` that ``upstream`` finishing triggers, or None.

        One due at once is subject to the job's overlap policy now; one with a delay, when
        the delay has passed (:meth:`_release_delayed`)."""
        after = entry.policy.after
        assert after is not None
        ok = upstream.status == "succeeded"
        if (after.on == "succeeded" and not ok) or (after.on == "failed" and ok):
            return None
        at = upstream.finished_at.astimezone(UTC) + timedelta(seconds=after.delay_s)
        state, reason, cause = ("delayed" if at > now else "pending"), None, None
        if entry.paused:
            state, reason, cause = (
                "skipped",
                "skipped: the job was paused when its upstream run finished",
                "paused",
            )
        elif state == "pending":
            held = self._overlapped(entry, now, claims)
            if held is not None:
                state, reason, cause = held
            else:
                claims.going[entry.id] = (
                    f"its chained run after {upstream.occurrence_id} was starting"
                )
        return _Planned(
            id=chained_occurrence_id(entry.id, upstream.occurrence_id),
            job_id=entry.id,
            scheduled_for=at,
            priority=entry.priority,
            trigger="chained",
            state=state,
            reason=reason,
            cause=cause,
            chained_from=upstream.occurrence_id,
            entry=entry,
        )

    def _overlapped(
        self, entry: Entry, now: datetime, claims: _Claims
    ) -> tuple[str, str, str] | None:
        """For an occurrence that is due now outside the planner (chained): None when it may
        run, else the (state, reason, cause) its job's overlap policy gives it while a run of
        the job is still going: skipped, or waiting as the one buffered occurrence."""
        if not self.tracking_runs or entry.policy.overlap == "allow":
            return None
        if entry.id in self.in_flight and self._still_going(entry.id, now):
            going = self.in_flight[entry.id]
            what = f"the run of {_when(min(going.values()))} was still going" + (
                f" (and {len(going) - 1} more)" if len(going) > 1 else ""
            )
        elif entry.id in claims.going:
            what = claims.going[entry.id]
        else:
            return None
        if entry.policy.overlap == "buffer":
            if entry.id not in self.waiting and entry.id not in claims.waiting:
                claims.waiting.add(entry.id)
                why = "it runs when that run finishes (overlap: buffer)"
                return "waiting", f"buffered: {what}; {why}", "overlap"
            why = "overlap: buffer holds one, and one was waiting already"
        else:
            why = "overlap: skip"
        return "skipped", f"skipped: {what} ({why})", "overlap"

    async def _release_delayed(self) -> None:
        """Chained occurrences whose delay has passed become pending, published this tick, or,
        while a run of their job is still going, skipped or buffered as its overlap policy says."""
        now = self.clock()
        now_ts = now.timestamp()
        due: list[tuple[str, str]] = []
        while self.delayed and self.delayed[0][0] <= now_ts:
            _, occ_id, job_id = heapq.heappop(self.delayed)
            due.append((occ_id, job_id))
        release: list[str] = []
        held: list[tuple[str, str, str, str, str]] = []
        claims = _Claims()
        for occ_id, job_id in due:
            entry = self.entries.get(job_id)
            if entry is not None and entry.paused:
                reason = "skipped: the job was paused when its chained occurrence's delay ran out"
                held.append((occ_id, job_id, "skipped", reason, "paused"))
                continue
            outcome = self._overlapped(entry, now, claims) if entry is not None else None
            if outcome is None:
                release.append(occ_id)
                claims.going.setdefault(job_id, f"its chained occurrence {occ_id} was starting")
            else:
                held.append((occ_id, job_id, *outcome))
        try:
            fence = self._fence()
            released = await self.store.release(release, fence=fence)
            changed = await self.store.hold_delayed(
                [(i, s, r, c) for i, _, s, r, c in held], fence=fence
            )
        except BaseException:
            for occ_id, job_id in due:  # the ledger still holds them as delayed: try again
                heapq.heappush(self.delayed, (now_ts, occ_id, job_id))
            raise
        if self.tracking_runs:
            jobs = dict(due)
            for occ_id in released:  # in flight from now, as a scheduled one once planned
                self.in_flight.setdefault(jobs[occ_id], {})[occ_id] = now
        for occ_id, job_id, state, _, cause in held:
            if occ_id in changed and state == "waiting":
                self.waiting[job_id] = occ_id
            elif occ_id in changed:
                self._count(self.stats.skipped, cause)
                metrics.OCCURRENCES_SKIPPED.labels(cause).inc()
        self._retry_pending = True
