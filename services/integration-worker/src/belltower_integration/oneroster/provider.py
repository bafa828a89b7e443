"""The provider side of the OneRoster 1.2 Rostering Service REST/JSON binding: the reads an LMS
makes (``GET /ims/oneroster/rostering/v1p2/users?filter=...``), answered for the console over
NATS (``integration.oneroster.read``).

The records are the ones the CSV export and the REST push build (:mod:`.roster` read by
:func:`..jobs.oneroster_export.read_snapshot`, shaped by :class:`.rest.Shaper`): the current and
upcoming terms (30 days), without demographics and guardians, each stamped with the time the
snapshot was read as ``dateLastModified`` (the SIS keeps no change times, so a delta pull by
``dateLastModified`` gets every record again). One snapshot is kept for ``max_age_s`` (30 s), so
the pages of one walk through a collection come from the same read of the SIS and a page costs
a filter and a sort in memory, not a read of the SIS.

Views, as the binding defines them: ``schools`` (orgs of type school), ``terms``
(academicSessions of type term), ``students`` and ``teachers`` (users with that role), and the
students or teachers of one class (their enrollments in it). The query parameters:

- ``filter``: predicates ``field<op>'value'`` with ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``
  or ``~`` (contains, any case), joined by `` AND `` / `` OR `` (AND binds first), on top-level
  fields that hold one value; values compare as text (dates and times sort so). A missing field
  is the empty text.
- ``sort`` one such field, ``order_by`` asc or desc; ties (and no ``sort``) go by sourcedId, so
  the order is stable and offset pages neither repeat nor skip a record.
- ``fields``: the top-level fields to give (any of the collection's).

A refusal is InvalidInput naming ``filter``, ``sort`` or ``fields``; an unknown sourcedId (or
class) is NotFound.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from belltower import operations as ops
from belltower.errors import InvalidInput, NotFound
from belltower.jobtypes import Database
from belltower.roster import ROSTER_REPLY_BYTES, RosterPage, RosterQuery
from belltower.rpc import serves

from . import rest
from .delta import stamp

Payload = dict[str, Any]
UPCOMING_DAYS = 30
MAX_AGE_S = 30.0


def _has_role(role: str) -> Callable[[Payload], bool]:
    return lambda user: any(r.get("role") == role for r in user.get("roles", ()))


VIEWS: dict[str, tuple[str, Callable[[Payload], bool] | None]] = {
    "orgs": ("orgs", None),
    "schools": ("orgs", lambda org: org.get("type") == "school"),
    "academicSessions": ("academicSessions", None),
    "terms": ("academicSessions", lambda session: session.get("type") == "term"),
    "courses": ("courses", None),
    "classes": ("classes", None),
    "users": ("users", None),
    "students": ("users", _has_role("student")),
    "teachers": ("users", _has_role("teacher")),
    "enrollments": ("enrollments", None),
}
"""Each collection the provider answers: the collection it is a view of, and which records."""

_PREDICATE = re.compile(r"([A-Za-z][A-Za-z0-9_.]*)\s*(!=|>=|<=|=|>|<|~)\s*'([^']*)'")
_JOIN = re.compile(r" (AND|OR) ")
FILTER_FORM = (
    "field<op>'value' with = != > >= < <= ~, joined by ' AND ' or ' OR ', "
    "e.g. familyName~'smi' AND status='active'"
)

Predicate = tuple[str, str, str]


def scalars(collection: str) -> list[str]:
    """The fields of ``collection`` a filter or a sort may name."""
    return [f for f in rest.FIELDS[collection] if f not in rest.REFERENCES]


def parse_filter(text: str, collection: str) -> list[list[Predicate]]:
    """``text`` as alternatives (OR) of conjunctions (AND) of predicates; refuses what the
    grammar does not hold and fields that are not a collection's one-value top-level fields."""
    allowed = scalars(collection)
    alternatives: list[list[Predicate]] = [[]]
    pos = 0
    while True:
        m = _PREDICATE.match(text, pos)
        if m is None:
            raise InvalidInput(
                "filter", f"{text!r} is not a filter (at character {pos + 1})", FILTER_FORM
            )
        name, op, value = m.groups()
        if name not in allowed:
            why = "is not a top-level field that holds one value" if name in rest.FIELDS[
                collection] or "." in name else "is not a field"  # fmt: skip
            raise InvalidInput(
                "filter", f"{name!r} {why} of {collection}", "one of " + ", ".join(allowed)
            )
        alternatives[-1].append((name, op, value))
        pos = m.end()
        if pos == len(text):
            return alternatives
        join = _JOIN.match(text, pos)
        if join is None:
            raise InvalidInput(
                "filter", f"{text!r} is not a filter (at character {pos + 1})", FILTER_FORM
            )
        if join.group(1) == "OR":
            alternatives.append([])
        pos = join.end()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _holds(record: Payload, predicate: Predicate) -> bool:
    name, op, wanted = predicate
    value = _text(record.get(name))
    if op == "=":
        return value == wanted
    if op == "!=":
        return value != wanted
    if op == "~":
        return wanted.casefold() in value.casefold()
    if op == ">":
        return value > wanted
    if op == ">=":
        return value >= wanted
    if op == "<":
        return value < wanted
    return value <= wanted


def matches(record: Payload, alternatives: list[list[Predicate]]) -> bool:
    return any(all(_holds(record, p) for p in conjunction) for conjunction in alternatives)


def check_sort(sort: str, collection: str) -> None:
    if sort and sort not in scalars(collection):
        raise InvalidInput(
            "sort",
            f"{sort!r} is not a field of {collection} to sort by",
            "one of " + ", ".join(scalars(collection)),
        )


def check_fields(fields: list[str], collection: str) -> None:
    unknown = [f for f in fields if f not in rest.FIELDS[collection]]
    if unknown or not all(fields):
        raise InvalidInput(
            "fields",
            f"{', '.join(repr(f) for f in unknown) or 'an empty name'} is not a field of "
            f"{collection}",
            "a comma-separated list of " + ", ".join(rest.FIELDS[collection]),
        )


@dataclass
class Snapshot:
    """The shaped records of one read of the SIS: per collection, in sourcedId order."""

    at: float
    records: dict[str, list[Payload]]
    by_id: dict[str, dict[str, Payload]] = field(default_factory=dict)
    members: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(class sourcedId, enrollment role) -> the users' sourcedIds."""

    def __post_init__(self) -> None:
        self.by_id = {c: {r["sourcedId"]: r for r in rows} for c, rows in self.records.items()}
        for e in self.records.get("enrollments", []):
            key = (e["class"]["sourcedId"], e["role"])
            self.members.setdefault(key, []).append(e["user"]["sourcedId"])


class RosterProvider:
    """Answers ``integration.oneroster.read`` from a snapshot of the SIS at most ``max_age_s`` old."""

    def __init__(self, db: Database, *, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.db = db
        self.max_age_s = max_age_s
        self.clock = clock
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            held = self._snapshot
            if held is None or self.clock() - held.at > self.max_age_s:
                held = self._snapshot = await self._read()
            return held

    async def _read(self) -> Snapshot:
        from ..jobs.oneroster_export import read_snapshot

        now = datetime.now(UTC)
        records = await read_snapshot(
            await self.db.pool(), now.date(), [], UPCOMING_DAYS, "institution", "",
            demographics=False, guardians=False,
        )  # fmt: skip
        modified = stamp(now)
        shaped = rest.Shaper("").records(records)
        return Snapshot(
            self.clock(),
            {
                c: [{**r, "dateLastModified": modified} for r in shaped[c].values()]
                for c in rest.ORDER
            },
        )

    @serves(ops.ONEROSTER_READ)
    async def read(self, q: RosterQuery) -> RosterPage:
        base, keep = VIEWS[q.collection]
        alternatives = parse_filter(q.filter, base) if q.filter else None
        check_sort(q.sort, base)
        check_fields(q.fields, base)
        snap = await self.snapshot()
        if q.sourced_id is not None:
            found = snap.by_id[base].get(q.sourced_id)
            if found is None or (keep is not None and not keep(found)):
                raise NotFound(f"no {q.collection} record with sourcedId {q.sourced_id!r}")
            return RosterPage(records=[_select(found, q.fields)], total=1, offset=0)
        rows = snap.records[base]
        if q.class_id is not None:
            if q.class_id not in snap.by_id["classes"]:
                raise NotFound(f"no class with sourcedId {q.class_id!r}")
            role = "student" if q.collection == "students" else "teacher"
            ids = set(snap.members.get((q.class_id, role), ()))
            rows = [r for r in rows if r["sourcedId"] in ids]
        if keep is not None:
            rows = [r for r in rows if keep(r)]
        if alternatives is not None:
            rows = [r for r in rows if matches(r, alternatives)]
        if q.sort:
            rows = sorted(rows, key=lambda r: r["sourcedId"], reverse=q.order_by == "desc")
            rows.sort(key=lambda r: _text(r.get(q.sort)), reverse=q.order_by == "desc")
        elif q.order_by == "desc":
            rows = rows[::-1]
        page: list[Payload] = []
        size = 0
        for r in rows[q.offset : q.offset + q.limit]:
            chosen = _select(r, q.fields)
            size += len(msgspec.json.encode(chosen))
            if page and size > ROSTER_REPLY_BYTES:
                break
            page.append(chosen)
        return RosterPage(records=page, total=len(rows), offset=q.offset)


def _select(record: Payload, fields: list[str]) -> Payload:
    return {f: record[f] for f in fields if f in record} if fields else record
