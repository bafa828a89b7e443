"""The dispatchers of the partitions this replica holds, as one object for the management API.

Any replica answers the management API (a queue group), but only the holder of a job's
partition dispatches it. Writes go to PostgreSQL as before; then the answering replica hands the
change to its own dispatcher when it holds the partition, and announces the job id on
``belltower.scheduler.changed`` so the holder, wherever it runs, reloads that job from
PostgreSQL. A new holder loads its partition from PostgreSQL, so nothing announced while no
one held it is lost.

A run-now is different: it must be decided against the runs in flight, which only the holder
follows. The replica that accepted it hands it to the holder as a request on
``belltower.scheduler.run-now.<partition>`` (the holder subscribes once its partition has
loaded) and waits for the answer: the ledger row, or the refusal to pass on. It asks up to
``HANDOVER_TRIES`` times with the same occurrence id, so a repeat is answered from the ledger
and never runs twice; if no answer ever came, the ledger says whether it ran, and when it did
not, the person asking gets a 503 saying nothing was recorded. Only when no replica holds the
partition ("no responders") does the accepting replica run it itself, as the next holder
reads the ledger when it loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import fields
from datetime import date, datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from belltower import metrics
from belltower.errors import BelltowerError, NotFound, Unavailable, error_class
from belltower.events import manual_occurrence_id, utcnow
from belltower.subjects import SCHEDULER_CHANGES, scheduler_run_now

from .dispatcher import Dispatcher
from .entry import Entry
from .fencing import Deposed, partition_of
from .lease import Lease
from .reconcile import Reconciler
from .runs import RunTracker
from .settings import SchedulerSettings
from .store import CalendarStore, LedgerRow, Store

log = logging.getLogger(__name__)


class _Change(msgspec.Struct, frozen=True):
    """A job changed (``job_id``), or a school calendar's days did (``calendar``)."""

    job_id: str
    replica: str
    calendar: str | None = None
    pending: bool = False
    """The job's occurrences were written ``pending`` (a backfill, a decision): publish them."""


class _RunNow(msgspec.Struct, frozen=True):
    """A run-now handed to the partition's holder by the replica that accepted it."""

    job_id: str
    occurrence_id: str
    """Chosen by the replica that accepted it: a retried hand-over names the same occurrence."""
    replica: str
    requested_by: str | None = None
    requested_from: str | None = None
    force: bool = False


class _RunNowAnswer(msgspec.Struct, frozen=True):
    """The holder's answer: the ledger row, or the error to give the person asking."""

    row: LedgerRow | None = None
    code: str | None = None
    message: str = ""
    field: str | None = None
    accepted: str | None = None


HANDOVER_TRIES = 3
"""Times a replica asks the partition's holder to take a run-now before answering an error."""


class _Held:
    """One partition's dispatcher, its loop task, and job ids changed while it was loading."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.loaded = asyncio.get_running_loop().create_future()
        self.changed_while_loading: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.runs: RunTracker | None = None
        """Feeds run events to the dispatcher (overlap, buffering, chaining) once it has loaded."""
        self.run_now_sub: Subscription | None = None
        """Run-now requests handed over by other replicas, answered once the partition loaded."""
        self.reconciler: Reconciler | None = None
        """Publishes again what the broker lost, and ends abandoned runs (``reconcile.py``)."""


class _Entries:
    """``entries.get(job_id)`` across the held partitions, as on a single Dispatcher."""

    def __init__(self, partitions: Partitions) -> None:
        self._partitions = partitions

    def get(self, job_id: str) -> Entry | None:
        held = self._partitions._holding(job_id)
        return held.dispatcher.entries.get(job_id) if held else None


class Partitions:
    """Stands where a single :class:`Dispatcher` stood for :class:`Operations`."""

    def __init__(
        self,
        store: Store,
        js: JetStreamContext,
        nc: Client,
        settings: SchedulerSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.js = js
        self.nc = nc
        self.settings = settings
        self.count = settings.scheduler_partitions
        self.replica = settings.scheduler_replica_id
        self.clock = clock
        self.held: dict[int, _Held] = {}
        self.entries = _Entries(self)
        self._manual = Dispatcher(store, js, clock=clock, stale_run_s=settings.stale_run_s)
        """Dispatches run-now requests for jobs of partitions held by other replicas."""
        self._background: set[asyncio.Task[None]] = set()

    async def subscribe(self) -> None:
        await self.nc.subscribe(SCHEDULER_CHANGES, cb=self._on_change)

    # -- leases come and go ---------------------------------------------------------------------

    async def acquired(self, lease: Lease) -> None:
        """Start dispatching a partition: load its jobs, then run its loop (in the background)."""
        dispatcher = Dispatcher(
            self.store,
            self.js,
            misfire_grace_s=self.settings.misfire_grace_s,
            max_batch=self.settings.dispatch_batch,
            stale_run_s=self.settings.stale_run_s,
            clock=self.clock,
            partition=(lease.partition, lease.count),
            lease=lease,
        )
        held = _Held(dispatcher)
        self.held[lease.partition] = held
        held.task = asyncio.create_task(
            self._serve(lease, held), name=f"dispatcher-p{lease.partition}"
        )

    def lost(self, lease: Lease, _why: str) -> None:
        """Stop a partition's dispatcher at once; unconfirmed publishes stay pending."""
        held = self.held.pop(lease.partition, None)
        if held is not None and held.task is not None:
            held.task.cancel()
        if held is not None and held.runs is not None:
            self._in_background(held.runs.stop())
        if held is not None and held.reconciler is not None:
            self._in_background(held.reconciler.stop())
        if held is not None and held.run_now_sub is not None:
            self._in_background(held.run_now_sub.unsubscribe())
        if held is not None and not held.loaded.done():
            held.loaded.cancel()
        if held is not None:  # the partition's new holder reports its jobs' streaks now
            metrics.forget_failure_streaks(held.dispatcher.entries)

    async def loaded(self) -> None:
        """Wait until every partition held now has loaded its jobs."""
        await asyncio.gather(
            *(asyncio.shield(h.loaded) for h in self.held.values()), return_exceptions=True
        )

    async def stop(self) -> None:
        for partition in list(self.held):
            held = self.held.pop(partition)
            if held.runs is not None:
                await held.runs.stop()
            if held.reconciler is not None:
                await held.reconciler.stop()
            if held.run_now_sub is not None:
                with contextlib.suppress(Exception):
                    await held.run_now_sub.unsubscribe()
            if held.task is not None:
                held.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await held.task

    async def _serve(self, lease: Lease, held: _Held) -> None:
        dispatcher = held.dispatcher
        try:
            while True:
                try:
                    count = await dispatcher.load()
                    while held.changed_while_loading:
                        await self._reload(held, held.changed_while_loading.pop())
                    break
                except Exception:
                    log.exception(
                        "loading a scheduler partition failed; retrying",
                        extra={"action": "partition.load_failed", "partition": lease.partition},
                    )
                    await asyncio.sleep(1.0)
                    lease.check()
        except BaseException:
            held.loaded.cancel()
            raise
        held.runs = RunTracker(self.js, dispatcher)
        await held.runs.start()
        held.reconciler = Reconciler(dispatcher, self.js, self.settings, clock=self.clock)
        held.reconciler.start()
        held.run_now_sub = await self.nc.subscribe(
            scheduler_run_now(lease.partition), cb=self._on_run_now
        )
        held.loaded.set_result(count)
        log.info(
            "scheduler partition loaded; dispatching",
            extra={
                "action": "partition.loaded",
                "partition": lease.partition,
                "jobs": count,
                "token": lease.token,
            },
        )
        await dispatcher.run_forever()

    # -- what Operations calls ------------------------------------------------------------------

    def _holding(self, job_id: str) -> _Held | None:
        return self.held.get(partition_of(job_id, self.count))

    def put(self, entry: Entry) -> None:
        self._apply_locally(entry.id, entry)
        self._announce(entry.id)

    def remove(self, job_id: str) -> None:
        self._apply_locally(job_id, None)
        self._announce(job_id)

    def pending_written(self, job_id: str) -> None:
        """A backfill or a decision wrote ``pending`` occurrences of the job: its partition's
        holder publishes them, here or wherever it runs (told on the change subject; should
        that notice be lost, its reconciler finds them within a round)."""
        held = self._holding(job_id)
        if held is not None and held.loaded.done():
            held.dispatcher.pending_written(job_id)
            return
        payload = msgspec.json.encode(_Change(job_id=job_id, replica=self.replica, pending=True))
        self._in_background(self.nc.publish(SCHEDULER_CHANGES, payload))

    async def run_now(
        self,
        entry: Entry,
        requested_by: str | None,
        requested_from: str | None = None,
        *,
        force: bool = False,
    ) -> LedgerRow:
        """Run now through the partition's dispatcher when held here; otherwise handed to the
        partition's holder (:meth:`_hand_over`), which applies the overlap policy with the runs
        it follows and answers with the ledger row or the refusal. Only when no replica holds
        the partition is it run here, and the next holder learns of it from the ledger (and,
        should it be loading right now, from the change notice)."""
        held = self._holding(entry.id)
        if held and held.loaded.done():
            return await held.dispatcher.run_now(entry, requested_by, requested_from, force=force)
        request = _RunNow(
            job_id=entry.id,
            occurrence_id=manual_occurrence_id(),
            replica=self.replica,
            requested_by=requested_by,
            requested_from=requested_from,
            force=force,
        )
        answered = await self._hand_over(request)
        if answered is not None:
            return answered
        try:
            return await self._manual.run_now(
                entry,
                requested_by,
                requested_from,
                force=force,
                occurrence_id=request.occurrence_id,
            )
        finally:
            self._announce(entry.id)

    async def _hand_over(self, request: _RunNow) -> LedgerRow | None:
        """Ask the partition's holder to run it, up to :data:`HANDOVER_TRIES` times, each with
        the same occurrence id (the holder answers a repeat from its ledger). None when nobody
        holds the partition; :class:`Unavailable` when the holder never answered and the ledger
        has no trace of the run."""
        subject = scheduler_run_now(partition_of(request.job_id, self.count))
        payload = msgspec.json.encode(request)
        wait = min(2.0, self.settings.request_timeout_s / (HANDOVER_TRIES + 1))
        for attempt in range(1, HANDOVER_TRIES + 1):
            try:
                reply = await self.nc.request(subject, payload, timeout=wait)
            except NoRespondersError:
                return None
            except NatsTimeoutError:
                log.warning(
                    "the partition's holder did not answer a run-now; asking again",
                    extra={"action": "partition.handover_retry", "attempt": attempt},
                )
                await asyncio.sleep(0.1 * attempt)
                continue
            answer = msgspec.json.decode(reply.data, type=_RunNowAnswer)
            if answer.code is not None:
                raise error_class(answer.code).from_wire(
                    answer.message, answer.field, answer.accepted
                )
            assert answer.row is not None
            return answer.row
        # Its answers may all have been lost on the way back: the ledger says whether it ran.
        done = await self._manual.answered(request.occurrence_id)
        if done is not None:
            return done
        raise Unavailable(
            f"not run: the scheduler holding this job's partition did not answer in "
            f"{HANDOVER_TRIES} tries; nothing was recorded. Try again in a moment"
        )

    async def _on_run_now(self, msg: Msg) -> None:
        """A run-now handed over by another replica, for a partition held here."""
        try:
            request = msgspec.json.decode(msg.data, type=_RunNow)
        except msgspec.ValidationError:
            log.warning(
                "malformed run-now hand-over ignored", extra={"action": "partition.bad_run_now"}
            )
            return
        held = self._holding(request.job_id)
        if held is None or not held.loaded.done():
            return  # not (or not yet) ours: the replica asking tries again
        try:
            answer = await self._run_handed_over(held, request)
        except Deposed:
            return  # the new holder answers the next try
        except BelltowerError as exc:
            answer = _RunNowAnswer(code=exc.code, message=exc.message, **exc.wire_fields())
        except Exception:
            log.exception(
                "a handed-over run-now failed; the replica asking tries again",
                extra={"action": "partition.run_now_failed", "job_id": request.job_id},
            )
            return
        with contextlib.suppress(Exception):
            await msg.respond(msgspec.json.encode(answer))

    async def _run_handed_over(self, held: _Held, request: _RunNow) -> _RunNowAnswer:
        row = await self.store.get_job(request.job_id)
        if row is None:
            raise NotFound(f"no job with id {request.job_id}")
        occ = await held.dispatcher.run_now(
            Entry.from_row(row),
            request.requested_by,
            request.requested_from,
            force=request.force,
            occurrence_id=request.occurrence_id,
        )
        log.info(
            "run-now handed over by another replica",
            extra={
                "action": "partition.run_now_handed_over",
                "job_id": request.job_id,
                "occurrence_id": occ.id,
                "replica": request.replica,
            },
        )
        # The ledger row alone: a planned occurrence also carries the job's in-memory entry.
        return _RunNowAnswer(
            row=LedgerRow(**{f.name: getattr(occ, f.name) for f in fields(LedgerRow)})
        )

    def set_calendar(self, name: str, days: frozenset[date]) -> None:
        """A calendar's days changed: every partition held here, and the holders elsewhere."""
        for held in self.held.values():
            held.dispatcher.set_calendar(name, days)
        payload = msgspec.json.encode(_Change(job_id="", replica=self.replica, calendar=name))
        self._in_background(self.nc.publish(SCHEDULER_CHANGES, payload))

    def _in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _apply_locally(self, job_id: str, entry: Entry | None) -> None:
        held = self._holding(job_id)
        if held is None:
            return
        if not held.loaded.done():
            held.changed_while_loading.add(job_id)
        elif entry is None:
            held.dispatcher.remove(job_id)
        else:
            held.dispatcher.put(entry)

    def _announce(self, job_id: str) -> None:
        payload = msgspec.json.encode(_Change(job_id=job_id, replica=self.replica))
        self._in_background(self.nc.publish(SCHEDULER_CHANGES, payload))

    async def _on_change(self, msg: Msg) -> None:
        try:
            change = msgspec.json.decode(msg.data, type=_Change)
        except msgspec.ValidationError:
            log.warning(
                "malformed scheduler change notice ignored",
                extra={"action": "partition.bad_change"},
            )
            return
        if change.replica == self.replica:
            return
        if change.calendar is not None:
            rows = await CalendarStore(self.store.pool).days(change.calendar)
            days = frozenset(day for day, _ in rows)
            for each in self.held.values():
                each.dispatcher.set_calendar(change.calendar, days)
            return
        held = self._holding(change.job_id)
        if held is None:
            return
        if not held.loaded.done():
            held.changed_while_loading.add(change.job_id)
            return
        if change.pending:
            held.dispatcher.pending_written(change.job_id)
            return
        try:
            await self._reload(held, change.job_id)
        except Exception:
            log.exception(
                "reloading a changed job failed; it is reloaded with its partition",
                extra={"action": "partition.reload_failed", "job_id": change.job_id},
            )

    async def _reload(self, held: _Held, job_id: str) -> None:
        row = await self.store.get_job(job_id)
        if row is None:
            held.dispatcher.remove(job_id)
        else:
            held.dispatcher.put(Entry.from_row(row))
            await held.dispatcher.adopt(job_id)
