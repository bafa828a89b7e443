"""What the dispatcher does about runs in flight: run-now under the overlap policy, adopting a
run another replica dispatched, applying run-started and run-finished events (releasing the
buffered occurrence, planning chained ones) and releasing chained occurrences whose delay ran
out. Every ledger write is fenced by the lease (:class:`Deposed` once another replica holds it)."""

from __future__ import annotations

import asyncio
import heapq
import logging
from datetime import UTC, datetime
from typing import Any

from asyncpg import Record

from belltower import metrics
from belltower.errors import Conflict, Unavailable
from belltower.events import RunFinishedData, manual_occurrence_id, run_id_for, utcnow

from . import limits
from .entry import Entry
from .jobstate import Applied, JobState
from .pipeline import Pipeline
from .planner import Claims, Planned, when
from .store import LedgerRow, StateStore

log = logging.getLogger(__name__)

_FINISHED_KEPT = 100_000


class InFlight(Pipeline):
    """Runs in flight, run-now, chaining and delayed occurrences (the dispatcher's third room)."""

    wake: asyncio.Event
    _lock: asyncio.Lock
    delayed: list[tuple[float, str, str]]
    chained: dict[str, list[str]]
    _finished_recently: dict[str, None]
    job_state: JobState

    def put(self, entry: Entry) -> None:
        raise NotImplementedError

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
            elif r["state"] == "limited":  # waits for its concurrency key: not yet run
                self.in_flight.setdefault(r["job_id"], {})[r["id"]] = r["scheduled_for"]
            else:
                heapq.heappush(self.delayed, (r["scheduled_for"].timestamp(), r["id"], r["job_id"]))
        for r in await StateStore(self.store.pool).streaks():
            if r["job_id"] in self.entries:  # this partition's: its holder keeps the gauge
                metrics.set_failure_streak(r["job_id"], r["type"], r["streak"])
        self.wake.set()
        return oldest

    async def run_now(
        self,
        entry: Entry,
        requested_by: str | None,
        requested_from: str | None = None,
        *,
        force: bool = False,
        occurrence_id: str | None = None,
    ) -> LedgerRow:
        """Dispatch one extra occurrence of a job now, outside its schedule.

        While a run of the job is still going (as the ledger says, whichever replica dispatched
        it), its overlap policy applies: ``skip`` refuses with :class:`Conflict` naming that run,
        ``buffer`` queues this one as the job's waiting occurrence (state ``waiting``, released
        when the run finishes) unless one waits already, ``allow`` runs at once. ``force`` runs
        at once whatever the policy. Every outcome is a ledger row, so `jobs why` explains it.

        ``occurrence_id``: the id another replica chose when it handed this request over
        (``partitions.py``); asked again with an id the ledger holds, the answer is that row's,
        so a retried hand-over never runs twice.
        """
        if occurrence_id is not None:
            done = await self.answered(occurrence_id)
            if done is not None:
                return done
        now = self.clock().astimezone(UTC)
        occ = Planned(
            id=occurrence_id or manual_occurrence_id(),
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
            hold = None if force else self._hold([occ])
            await self.store.plan([occ], [], fence=self._fence(), hold=hold)
            if hold is not None:
                self._held([occ], hold)
            if refusal is not None:
                self._count(self.stats.skipped, "overlap")
                metrics.OCCURRENCES_SKIPPED.labels("overlap").inc()
                raise Conflict(refusal)
            if occ.state == "waiting":
                if self.tracking_runs and occ.cause != limits.CAUSE:
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

    async def answered(self, occurrence_id: str) -> LedgerRow | None:
        """The outcome of a run-now already in the ledger (a hand-over asked again), or None."""
        r = await self.store.occurrence(occurrence_id)
        if r is None:
            return None
        if r["state"] == "skipped" and r["cause"] == "overlap":
            raise Conflict(f"not run: {r['reason']}")
        return LedgerRow(
            id=r["id"],
            job_id=r["job_id"],
            scheduled_for=r["scheduled_for"],
            priority=r["priority"],
            trigger=r["trigger"],
            state=r["state"],
            requested_by=r["requested_by"],
            reason=r["reason"],
            cause=r["cause"],
            requested_from=r["requested_from"],
        )

    async def _manual_overlap(
        self, entry: Entry, occ: Planned, now: datetime, force: bool
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
        at = when(first["dispatched_at"] or first["scheduled_for"])
        trigger = f"{first['trigger']}, " if first["trigger"] else ""
        what = f"run {run} of this job ({trigger}dispatched {at}, {status})" + (
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
        if job_id in self.in_flight and self.still_going(job_id, now):
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
        if waiting is not None and not (job_id in self.in_flight and self.still_going(job_id, now)):
            # What it waited for finished before we learnt of it: it runs now.
            del self.waiting[job_id]
            async with self._lock:
                await self.store.release([waiting], fence=self._fence())
            self._retry_pending = True
            self.wake.set()

    # -- run events: overlap and chaining -------------------------------------------------------

    async def runs_finished(self, finished: list[RunFinishedData]) -> None:  # noqa: C901  (one fenced write per batch; its undo needs every branch in one place)
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
        chained: list[Planned] = []
        released: list[str] = []
        claims = Claims()
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
                    planned = self.chain(entry, data, now, claims)
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
        chained: list[Planned],
        released: list[str],
        paused: list[str],
    ) -> None:
        """The ledger writes of :meth:`runs_finished`, and what they make due or held."""
        async with self._lock:
            # Whether or not this replica's write was the first (another replica follows the
            # same events), the occurrences are published from the ledger's state: releasing
            # is idempotent, and pending rows are published once, de-duplicated by their id.
            if chained:
                hold = self._hold(chained)
                new = await self.store.plan(chained, [], fence=self._fence(), hold=hold)
                if hold is not None:
                    self._held(chained, hold)
                for p in chained:
                    if p.state == "delayed":
                        heapq.heappush(self.delayed, (p.scheduled_for.timestamp(), p.id, p.job_id))
                    elif p.state == "pending":
                        self._retry_pending = True
                        if p.id in new:  # in flight from now: a later event's chain sees it
                            self.in_flight.setdefault(p.job_id, {})[p.id] = p.scheduled_for
                    elif p.state == "waiting" and p.id in new and p.cause != limits.CAUSE:
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
            await self.record_finished(
                [
                    (d.occurrence_id, d.status, d.error, d.finished_at, d.started_at)
                    for d in finished
                ]
            )

    async def record_finished(self, updates: list[tuple[Any, ...]]) -> None:
        """Write finished statuses to the ledger (fenced) and, in the same transaction, what they
        do to the jobs' failure streaks (``jobstate.py``); then apply its pauses in memory."""
        applied = Applied()
        released: list[str] = []

        async def streaks(conn: Any, rows: list[Record]) -> None:
            await self.job_state.finished(conn, rows, applied)
            released[:] = await self._free_slots(conn, rows)

        await self.store.record_runs(updates, fence=self._fence(), after=streaks)
        self.job_state.apply(applied, self.put)
        if released:
            self._retry_pending = True
            self.wake.set()

    async def runs_started(self, started: list[str] | list[tuple[str, datetime]]) -> None:
        """Record that runs started (occurrence ids, or (id, started at) pairs), so the ledger
        can say "running" and, later, how long its runs take."""
        await StateStore(self.store.pool).record_started(
            [s if isinstance(s, tuple) else (s, None) for s in started],  # type: ignore[misc]
            fence=self._fence(),
        )

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
        claims = Claims()
        for occ_id, job_id in due:
            entry = self.entries.get(job_id)
            if entry is not None and entry.paused:
                reason = "skipped: the job was paused when its chained occurrence's delay ran out"
                held.append((occ_id, job_id, "skipped", reason, "paused"))
                continue
            outcome = self.overlapped(entry, now, claims) if entry is not None else None
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
