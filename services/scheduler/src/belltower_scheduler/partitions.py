"""The dispatchers of the partitions this replica holds, as one object for the management API.

Any replica answers the management API (a queue group), but only the holder of a job's
partition dispatches it. Writes go to PostgreSQL as before; then the answering replica hands the
change to its own dispatcher when it holds the partition, and announces the job id on
``belltower.scheduler.changed`` so the holder, wherever it runs, reloads that job from
PostgreSQL. A new holder loads its partition from PostgreSQL, so nothing announced while no
one held it is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from belltower.events import utcnow
from belltower.subjects import SCHEDULER_CHANGES

from .dispatcher import Dispatcher
from .entry import Entry
from .fencing import partition_of
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


class _Held:
    """One partition's dispatcher, its loop task, and job ids changed while it was loading."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.loaded = asyncio.get_running_loop().create_future()
        self.changed_while_loading: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.runs: RunTracker | None = None
        """Feeds run events to the dispatcher (overlap, buffering, chaining) once it has loaded."""
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
        if held is not None and not held.loaded.done():
            held.loaded.cancel()

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

    async def run_now(
        self,
        entry: Entry,
        requested_by: str | None,
        requested_from: str | None = None,
        *,
        force: bool = False,
    ) -> LedgerRow:
        """Run now through the partition's dispatcher when held here; otherwise the ledger row is
        written here and the holder, told by the change notice, adopts the run in flight (or the
        buffered one) so its overlap policy and release see it."""
        held = self._holding(entry.id)
        if held and held.loaded.done():
            return await held.dispatcher.run_now(entry, requested_by, requested_from, force=force)
        try:
            return await self._manual.run_now(entry, requested_by, requested_from, force=force)
        finally:
            self._announce(entry.id)

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
