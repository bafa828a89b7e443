"""Bulk and delta sets from the records a run read and the snapshot of the run before.

Pure: a record is its sourcedId and the values after ``dateLastModified``; the previous run's
snapshot says what the receiver has and since when. A bulk set sends every record with
``status`` and ``dateLastModified`` blank; a delta set sends the new and changed records as
``active`` and those gone since as ``tobedeleted`` (with their last values), stamped with this
run's time. Unchanged records keep the time they last changed in the new snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

Values = tuple[str, ...]
Records = dict[str, dict[str, Values]]  # file -> sourcedId -> values


@dataclass
class Snapshot:
    """What one run sent, per file: sourcedId -> (values, when they last changed)."""

    files: dict[str, dict[str, tuple[Values, datetime]]] = field(default_factory=dict)

    def ids(self) -> dict[str, set[str]]:
        return {name: set(records) for name, records in self.files.items()}


@dataclass
class Planned:
    rows: dict[str, list[list[str]]]  # file -> full CSV rows, sourcedId first
    snapshot: Snapshot
    counts: dict[str, dict[str, int]]  # file -> {"active": n, "tobedeleted": n, "unchanged": n}


def stamp(at: datetime) -> str:
    """A ``dateLastModified`` value: UTC with milliseconds and ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def plan(current: Records, base: Snapshot | None, at: datetime) -> Planned:
    """The set to send: bulk when ``base`` is None, else the delta against it."""
    now = stamp(at)
    rows: dict[str, list[list[str]]] = {}
    snapshot = Snapshot()
    counts: dict[str, dict[str, int]] = {}
    for name, records in current.items():
        before = base.files.get(name, {}) if base else {}
        kept: dict[str, tuple[Values, datetime]] = {}
        out: list[list[str]] = []
        tally = {"active": 0, "tobedeleted": 0, "unchanged": 0}
        for sid in sorted(records):
            values = records[sid]
            old = before.get(sid)
            if base is not None and old is not None and old[0] == values:
                kept[sid] = old
                tally["unchanged"] += 1
                continue
            kept[sid] = (values, at)
            tally["active"] += 1
            out.append(_full(sid, values, "active" if base else "", now if base else ""))
        for sid in sorted(set(before) - set(records)):
            tally["tobedeleted"] += 1
            out.append(_full(sid, before[sid][0], "tobedeleted", now))
        rows[name] = out
        snapshot.files[name] = kept
        counts[name] = tally
    return Planned(rows, snapshot, counts)


def _full(sid: str, values: Values, status: str, modified: str) -> list[str]:
    return [sid, status, modified, *values]
