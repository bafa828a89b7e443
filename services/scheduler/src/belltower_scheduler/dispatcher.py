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

The rooms: ``entry.py`` (what is kept per job), ``planner.py`` (planning, no I/O),
``pipeline.py`` (ledger writes, publishing, confirming), ``inflight.py`` (runs in flight,
run-now, chaining, delayed occurrences), ``slots.py`` (concurrency keys: limits per target,
decided by ``limits.py`` in the ledger), ``fencing.py`` (partitions and lease tokens); this
module holds the set of jobs and the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from datetime import date, datetime

from nats.js import JetStreamContext

from belltower.events import utcnow
from belltower.schedule import CompiledSchedule

from .due import DueQueue
from .entry import Entry, compiled_for
from .fencing import Deposed, Partition
from .inflight import InFlight
from .jobstate import JobState
from .lease import Lease
from .pipeline import DispatchStats, Sent
from .publisher import BatchPublisher
from .store import CalendarStore, Store

log = logging.getLogger(__name__)

PLAN_CHUNK = 5_000
"""Occurrences per ledger transaction. A batch is written and published in chunks so that the
database writes one chunk while the previous one is being published: big enough that a
statement's round-trip is amortised, small enough that publishing starts early."""

MAX_SLEEP_S = 1.0
"""The dispatcher looks at the clock at least this often, so a jump of the host's clock is
seen within a second: forward, what fell due is planned under the catch-up policy at once;
back and forward again, nothing sleeps through the correction. It also bounds how soon
pending occurrences are retried after an outage."""

_loads_collecting_paused = 0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while jobs are loaded, and during a tick.

    Every Entry is a tracked container that lives on, so each collection during a load walks
    all the entries loaded so far without finding garbage: at a million jobs that was about
    40% of the load time. A tick of a burst allocates a few objects per occurrence (planned
    rows, messages, headers) that set off collections the same way: at 100,000 due at once,
    some 380 of them, one a full one over every entry, about a tenth of the tick's CPU.
    Neither makes much cyclic garbage, and it is collected once the collector runs again.
    Pauses can overlap (a load per partition, a tick per partition), so the last one to end
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


class Dispatcher(InFlight):
    """The jobs of one partition, their due queue and the loop that dispatches them.

    Planning is :class:`~.planner.Planner`'s, the ledger writes and publishing
    :class:`~.pipeline.Pipeline`'s, runs in flight :class:`~.inflight.InFlight`'s; this class
    holds the set of jobs and the loop.
    """

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
        super().__init__(misfire_grace_s=misfire_grace_s, stale_run_s=stale_run_s)
        self.store = store
        self.js = js
        # nats-py's JetStreamContext has no public accessor for its connection.
        self.publisher = publisher or BatchPublisher(js._nc, stall_s=publish_timeout_s)
        self.max_batch = max_batch
        self.plan_chunk = plan_chunk
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self.queue = DueQueue(self.entries)
        self.wake = asyncio.Event()
        self.stats = DispatchStats()
        self._retry_pending = True
        self._pending_written = False
        """Pending occurrences were written outside the planner (:meth:`pending_written`)."""
        self._lock = asyncio.Lock()
        self._sent: list[Sent] = []
        """Batches published this tick, confirmed and marked once the tick has published all."""
        self.delayed: list[tuple[float, str, str]] = []
        """Heap of chained occurrences waiting for their delay: (due timestamp, id, job id)."""
        self.chained: dict[str, list[str]] = {}
        """Upstream job id -> ids of the jobs that run after it."""
        self.calendar_days: dict[str, frozenset[date]] = {}
        self.partition = partition
        self.lease = lease
        self._finished_recently: dict[str, None] = {}
        """Occurrences whose finished event was applied (the latest ``_FINISHED_KEPT``), so that
        :meth:`adopt` does not take a run that finished meanwhile for one in flight."""
        self.job_state = JobState(js, self.entries, clock, publish_timeout_s)
        self.limited: dict[str, tuple[str, int]] = {}
        self._swept = 0.0

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
                    policy = entry.spec.policy
                    if (
                        entry.schedule.schedule.calendar is None
                        and policy.after is None
                        and policy.concurrency_key is None
                        and entry.id not in entries
                    ):
                        entries[entry.id] = entry  # what put() comes to for most jobs
                        push(entry)
                    else:
                        self.put(entry)
                count += len(records)
        self.wake.set()
        return count

    def calendared(self, compiled: CompiledSchedule) -> CompiledSchedule:
        """The schedule with its school calendar's non-school days (schedule engine hook)."""
        name = compiled.schedule.calendar
        if name is None:
            return compiled
        return compiled_for(
            compiled.schedule, self.calendar_days.get(name, frozenset()), compiled.spread_key
        )

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
        self.keyed(entry)
        self._push(entry)
        self.wake.set()

    def remove(self, job_id: str) -> None:
        entry = self.entries.pop(job_id, None)
        self.limited.pop(job_id, None)
        if entry is not None and entry.policy.after is not None:
            self._unchain(entry)

    def _unchain(self, entry: Entry) -> None:
        assert entry.policy.after is not None
        followers = self.chained.get(entry.policy.after.job, [])
        if entry.id in followers:
            followers.remove(entry.id)

    def _push(self, entry: Entry) -> None:
        self.queue.push(entry)

    def pending_written(self, _job_id: str = "") -> None:
        """Occurrences were written ``pending`` outside the planner (a backfill, a catch-up
        decision): publish them on the next tick, as after a crash."""
        self._pending_written = True
        self.wake.set()

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
        """How long to sleep: until the next due instant on the dispatcher's clock, but never
        more than :data:`MAX_SLEEP_S`, as the sleep runs on the monotonic clock and a step of
        the wall clock (NTP, an operator) would otherwise go unnoticed until it ends."""
        now = self.clock().timestamp()
        first = self.queue.first()
        until_due = max(0.0, first - now) if first is not None else MAX_SLEEP_S
        if self.delayed:
            until_due = min(until_due, max(0.0, self.delayed[0][0] - now))
        return min(until_due, MAX_SLEEP_S)

    async def tick(self) -> int:
        """Dispatch everything due now; returns how many occurrences were published.

        Everything due is written and published first; JetStream's acknowledgements are then
        looked at and the confirmed occurrences marked ``dispatched``, before the tick returns.
        Marking is bookkeeping: doing it after the last publish keeps the process's CPU and the
        database for getting the work out (a crash in between leaves the rows ``pending``, and
        their republication is de-duplicated by JetStream). Measured (bench dispatch_rate, two
        cores): marking each chunk on a second connection while later ones were written made
        the tick no faster; the database's work for the burst is the same either way.
        """
        async with self._lock:
            with _collector_paused():
                if self.delayed and self.delayed[0][0] <= self.clock().timestamp():
                    await self._release_delayed()
                if self.limited:
                    await self._admit_waiting()
                total = 0
                if self._retry_pending or self._pending_written:
                    # Cleared first: rows written while this runs ask for the next tick's pass.
                    self._pending_written = False
                    total = await self.republish_pending()
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
            await self._commit_and_send(self.plan_chunks(due, now, self.plan_chunk))
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
