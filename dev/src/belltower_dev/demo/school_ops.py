"""What Focus's school-operations jobs need of the demo school: its school years (August to
July; the one in progress, the one before and the next, which Rollover rolls into) and which
courses are online (those with most of their sections at the Online campus, for the Online Course Requirement).
Derived from the day and the rows already drawn, with no draw of its own, so every other table
keeps its rows."""

from __future__ import annotations

from datetime import date

from .model import DemoData


def school_year_of(today: date) -> int:
    """The school year in progress on ``today``: 2026 is 2026-27, from 1 August to 31 July."""
    return today.year if today.month >= 8 else today.year - 1


ONLINE_CAMPUS_ID = 3
"""The Online campus (codes.CAMPUSES, in id order)."""


def add_school_operations(data: DemoData) -> None:
    columns, sections = data.tables["sections"]
    campus, course = columns.index("campus_id"), columns.index("course_id")
    campuses: dict[int, list[int]] = {}
    for row in sections:
        campuses.setdefault(row[course], []).append(row[campus])
    online = {c for c, where in campuses.items() if 2 * where.count(ONLINE_CAMPUS_ID) > len(where)}
    course_columns, courses = data.tables["courses"]
    data.tables["courses"] = (
        [*course_columns, "online"],
        [(*row, row[0] in online) for row in courses],
    )
    current = school_year_of(data.today)
    data.add(
        "school_years",
        ["year", "name", "starts_on", "ends_on"],
        [
            (y, f"{y}-{(y + 1) % 100:02d}", date(y, 8, 1), date(y + 1, 7, 31))
            for y in (current - 1, current, current + 1)
        ],
    )
