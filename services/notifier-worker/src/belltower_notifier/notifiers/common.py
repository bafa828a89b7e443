"""What the notifier modules share: parameter types, SQL fragments, columns, row building."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from belltower import sis

from ..notify import Query, Row

Meta = msgspec.Meta
Statuses = Annotated[
    list[sis.PersonStatus],
    Meta(description="module statuses (student, faculty, staff, prospect, alumni) to include"),
]
Threshold = Annotated[int, Meta(ge=0, description="a row is reported at or above this number")]
DaysAfterEnd = Annotated[
    int, Meta(ge=0, description="days that must have passed since the section ended")
]
StartDate = Annotated[
    date | None, Meta(description="only sections starting on or after this day; empty: any")
]
Channel = Annotated[Literal["email", "reminder", "both"], Meta(description="how they are told")]
NotifyStudents = Annotated[bool, Meta(description="also tell each student about their own rows")]
NotifyFaculty = Annotated[
    bool, Meta(description="also tell each section's lead faculty member about their sections")
]
LookBack = Annotated[
    int,
    Meta(
        ge=1,
        le=3650,
        description="on the first run, how many days back 'since the last run' starts",
    ),
]

NAME = "p.last_name || ', ' || p.first_name AS name, p.sis_id"
SECTION = "c.code || '-' || s.section_code AS section, c.title AS course"
FACULTY = "(SELECT f.last_name || ', ' || f.first_name FROM sis.people f WHERE f.id = s.lead_faculty_id) AS faculty"

STUDENT_COLUMNS = (("name", "Name"), ("sis_id", "ID"))
SECTION_COLUMNS = (("section", "Section"), ("course", "Course"))


async def rows_of(
    q: Query[Any],
    sql: str,
    args: list[Any],
    item: Callable[[dict[str, Any]], str],
    *,
    faculty: str | None = None,
    person: str = "person_id",
) -> list[Row]:
    """Run a selection and turn each record into a Row about its ``person`` column."""
    records = await q.conn.fetch(sql, *args)
    out = []
    for record in records:
        values = dict(record)
        out.append(
            Row(
                person_id=values[person],
                item=item(values),
                values=values,
                faculty_id=values.get(faculty) if faculty else None,
            )
        )
    return out


def section_item(v: dict[str, Any]) -> str:
    return f"section:{v['section_id']}"
