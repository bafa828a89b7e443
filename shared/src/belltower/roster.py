"""The OneRoster provider's read operation (``integration.oneroster.read``): what the console asks
the integration worker for when an LMS pulls a roster, and what comes back.

The console answers the 1EdTech OneRoster 1.2 Rostering Service REST/JSON binding's ``GET``s
(``/ims/oneroster/rostering/v1p2/...``); the integration worker reads the SIS and builds the same
records the OneRoster CSV export and REST push build, then filters, sorts, selects and pages them.
A reply holds at most ``limit`` records and never more than :data:`ROSTER_REPLY_BYTES` of them, so
it fits one NATS message: the console asks again from ``offset + len(records)`` until its HTTP page
is full.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

ROSTER_LIMIT_MAX = 1_000
"""The most records one HTTP page (``limit``) may ask for."""
ROSTER_REPLY_BYTES = 256 * 1024
"""A reply stops adding records once they pass this size (one record always goes)."""

Collection = Literal[
    "orgs", "schools", "academicSessions", "terms", "courses", "classes", "users", "students",
    "teachers", "enrollments",
]  # fmt: skip
COLLECTIONS: tuple[str, ...] = Collection.__args__  # type: ignore[attr-defined]


class RosterQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One read: a collection (or a view of one), or one record of it (``sourced_id``), or the
    students or teachers of one class (``collection`` students/teachers with ``class_id``).
    ``filter``, ``sort``/``order_by`` and ``fields`` are the binding's query parameters, checked
    by the worker (refused as InvalidInput naming ``filter``, ``sort`` or ``fields``)."""

    collection: Collection
    sourced_id: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    class_id: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    filter: Annotated[str, msgspec.Meta(max_length=2_000)] = ""
    sort: Annotated[str, msgspec.Meta(max_length=100)] = ""
    order_by: Literal["asc", "desc"] = "asc"
    fields: Annotated[list[str], msgspec.Meta(max_length=100)] = []
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=ROSTER_LIMIT_MAX)] = 100


class RosterPage(msgspec.Struct, kw_only=True):
    """Records from ``offset`` in the asked order, and how many match in all. GUIDRefs' ``href``
    are paths (``/ims/oneroster/rostering/v1p2/...``): the console puts its own address before
    them."""

    records: list[dict[str, Any]]
    total: int
    offset: int
