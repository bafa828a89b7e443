"""The jobs' next due instants, grouped by instant: what the dispatcher takes due work from.

A million jobs fall due at far fewer instants (schedules land on whole minutes, and many jobs
share a time), so the queue keeps one bucket per instant, a list of the jobs due then, and a
heap of the instants only. A job costs one list slot instead of a heap item of its own (a
tuple with its timestamp and tie-breakers, about 130 bytes), and jobs due at the same instant
share one ``next_due`` datetime.

Within an instant, jobs are taken by priority, higher first, and in the order they were queued
among equal priorities: a bucket is sorted (stably) when it is drained, if anything was added
since its last sort.

Nothing is removed from a bucket when a job changes. Each entry remembers the bucket it is
queued in (``Entry.queued``, cleared when it is taken); an item is live only while its entry is
still the job's current one (replaced and removed jobs are not), is not paused, and still names
that bucket. A job replaced, removed or moved to another instant thereby leaves a stale item
behind, and stale items are dropped when their bucket is drained or reaches the front. Pushing
an entry again where it is queued already adds nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from .entry import Entry

_priority = attrgetter("spec.priority")


class _Bucket(list["Entry"]):
    """The jobs queued for one instant, and that instant (shared by the jobs due then)."""

    __slots__ = ("at", "ordered")

    def __init__(self, at: datetime) -> None:
        super().__init__()
        self.at = at
        self.ordered = True


class DueQueue:
    """Jobs by next due instant; ``entries`` is the dispatcher's map of current jobs by id."""

    def __init__(self, entries: Mapping[str, Entry]) -> None:
        self.entries = entries
        self._buckets: dict[float, _Bucket] = {}
        self._instants: list[float] = []
        """Heap of the instants (POSIX timestamps) that have a bucket."""

    def push(self, entry: Entry) -> None:
        """Queue a job at its ``next_due`` (nothing when it has none or is paused).

        A job already queued at that instant is not queued twice. If an equal instant is queued
        already, the entry's ``next_due`` becomes that instant's datetime object (same value,
        same tzinfo), so jobs due together hold one datetime between them.
        """
        at = entry.next_due
        if at is None or entry.paused:
            return
        ts = at.timestamp()
        bucket = self._buckets.get(ts)
        if bucket is None:
            bucket = self._buckets[ts] = _Bucket(at)
            heapq.heappush(self._instants, ts)
        elif entry.queued is bucket:
            return
        elif bucket.at.tzinfo is at.tzinfo:
            entry.next_due = bucket.at
        if bucket.ordered and bucket and _priority(bucket[-1]) < entry.spec.priority:
            bucket.ordered = False
        bucket.append(entry)
        entry.queued = bucket

    def _live(self, entry: Entry, bucket: _Bucket) -> bool:
        return entry.queued is bucket and not entry.paused and self.entries.get(entry.id) is entry

    def first(self) -> float | None:
        """The earliest instant with a live job (stale items in front are dropped), or None."""
        instants = self._instants
        while instants:
            ts = instants[0]
            bucket = self._buckets[ts]
            stale = 0
            for entry in bucket:
                if self._live(entry, bucket):
                    break
                stale += 1
            if stale < len(bucket):
                del bucket[:stale]
                return ts
            self._drop_first()
        return None

    def take(self, now_ts: float, limit: int) -> list[Entry]:
        """Up to ``limit`` live jobs due at or before ``now_ts``: earlier instants first, and
        within an instant higher priority first. Taken jobs are no longer queued."""
        due: list[Entry] = []
        instants = self._instants
        while instants and instants[0] <= now_ts and len(due) < limit:
            ts = instants[0]
            bucket = self._buckets[ts]
            if not bucket.ordered:
                bucket.sort(key=_priority, reverse=True)  # stable: queue order among equals
                bucket.ordered = True
            seen = 0
            for entry in bucket:
                seen += 1
                if self._live(entry, bucket):
                    entry.queued = None
                    due.append(entry)
                    if len(due) == limit:
                        break
            if seen < len(bucket):
                del bucket[:seen]
            else:
                self._drop_first()
        return due

    def _drop_first(self) -> None:
        """Forget the earliest instant, whose bucket holds nothing live any more.

        The bucket is emptied too: stale entries still name it as where they are queued, and
        it would otherwise hold them (and they it) until the cyclic collector ran.
        """
        self._buckets.pop(heapq.heappop(self._instants)).clear()

    def due_by(self, now_ts: float) -> bool:
        """Whether an instant at or before ``now_ts`` is queued (its jobs may all be stale)."""
        return bool(self._instants) and self._instants[0] <= now_ts

    def __len__(self) -> int:
        """Queued items, stale ones included."""
        return sum(len(b) for b in self._buckets.values())
