"""What Focus's school-operations jobs need of the demo school: its school years (August to
July; the one in progress, the one before and the next, which Rollover rolls into). Derived
from the day alone, with no draw of its own, so every other table keeps its rows."""

from __future__ import annotations

from datetime import date

from .model import DemoData


def school_year_of(today: date) -> int:
    """The school year in progress on ``today``: 2026 is 2026-27, from 1 August to 31 July."""
    return today.year if today.month >= 8 else today.year - 1


def add_school_years(data: DemoData) -> None:
    current = school_year_of(data.today)
    data.add(
        "school_years",
        ["year", "name", "starts_on", "ends_on"],
        [
            (y, f"{y}-{(y + 1) % 100:02d}", date(y, 8, 1), date(y + 1, 7, 31))
            for y in (current - 1, current, current + 1)
        ],
    )
