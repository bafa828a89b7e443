"""The dispatcher's room for limits per target (``limits.py``): which of its jobs have a
concurrency key, the keyed occurrences a ledger write queues for their keys' slots, what such a
write held back or released, and the periodic admission of what waits.

Every method returns at once while no job of the dispatcher has a key (``limited`` is empty), so
a dispatcher without keyed jobs pays one empty-dict test per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import limits
from .entry import Entry
from .limits import Hold
from .planner import Planned, Planner

if TYPE_CHECKING:
    from .fencing import Fence
    from .store import Store


class Slots(Planner):
    """Concurrency keys of the dispatcher's jobs (the dispatcher's limits room)."""

    store: Store
    clock: Callable[[], datetime]
    _retry_pending: bool
    limited: dict[str, tuple[str, int]]
    """Job id -> (concurrency key, limit) of the jobs that have one."""
    _swept: float

    def _fence(self) -> Fence | None:
        raise NotImplementedError

    def keyed(self, entry: Entry) -> None:
        """Note whether a job put in the dispatcher has a key (one attribute read if not)."""
        keyed = limits.key_of(entry.policy, entry.params_json)
        if keyed is not None:
            self.limited[entry.id] = keyed
        elif self.limited:
            self.limited.pop(entry.id, None)

    def _hold(self, occurrences: list[Planned]) -> Hold | None:
        """The occurrences to run of jobs with a concurrency key, for the plan's transaction to
        queue for their keys' slots (``limits.py``); None when there are none."""
        limited = self.limited
        if not limited:
            return None
        keyed = [
            (p.id, k[0], p.job_id, k[1], p.priority, p.scheduled_for)
            for p in occurrences
            if p.state == "pending" and (k := limited.get(p.job_id)) is not None
        ]
        return Hold(keyed, self.clock(), self.stale_run) if keyed else None

    async def _held_pending(self, rows: list[Any]) -> list[Any]:
        """Pending rows to publish, less those of keyed jobs that must wait for their key's
        slot (written pending outside the planner: ``Store.hold_pending``)."""
        limited = self.limited
        if not limited:
            return rows
        keyed = [
            (r["id"], k[0], r["job_id"], k[1], r["priority"], r["scheduled_for"])
            for r in rows
            if (k := limited.get(r["job_id"])) is not None
        ]
        if not keyed:
            return rows
        hold = Hold(keyed, self.clock(), self.stale_run)
        await self.store.hold_pending(hold, fence=self._fence())
        if hold.released:
            self._retry_pending = True
        for r in rows:
            if r["id"] in hold.waiting:
                self._going(r["job_id"], r["id"], r["scheduled_for"])
        return [r for r in rows if r["id"] not in hold.waiting]

    def _going(self, job_id: str, occurrence_id: str, at: datetime) -> None:
        """An occurrence waiting for its key counts as its job's run in flight for the overlap
        policy (else two occurrences of one job could wait, then run side by side)."""
        if self.tracking_runs:
            self.in_flight.setdefault(job_id, {})[occurrence_id] = at

    def _held(self, occurrences: list[Planned], hold: Hold) -> None:
        """What the plan's transaction made of the keyed occurrences: those over their key's
        limit wait (not published); waiting ones it released are published as pending."""
        for p in occurrences:
            reason = hold.waiting.get(p.id)
            if reason is not None:
                p.state, p.cause, p.reason = "waiting", limits.CAUSE, reason
                self._going(p.job_id, p.id, p.scheduled_for)
        if hold.released:
            self._retry_pending = True

    async def _admit_waiting(self) -> None:
        """Every :data:`limits.SWEEP_S`: admit what waits for a concurrency key's slot (freed
        by the reconciler, or by a run another partition follows) and publish this partition's
        pending occurrences, which another replica's admission may have released."""
        now = self.clock()
        if now.timestamp() - self._swept < limits.SWEEP_S:
            return
        self._swept = now.timestamp()
        await self.store.admit_waiting(now, self.stale_run, fence=self._fence())
        self._retry_pending = True

    async def _free_slots(self, conn: Any, finished: list[Any]) -> list[str]:
        """Runs finished (ledger rows, in the transaction recording them): the slots of keyed
        jobs' runs are freed and their keys' waiting occurrences admitted; returns those."""
        limited = self.limited
        if not limited:
            return []
        keyed = [r["id"] for r in finished if r["job_id"] in limited]
        return await limits.free(conn, keyed, self.clock(), self.stale_run)
