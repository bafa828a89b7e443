"""The grade of an enrollment whose section has ended."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

from .courses import Section
from .model import Row


def grade_row(rng: random.Random, eid: int, info: Section, today: date, status: str) -> Row:
    """A grade row for an enrollment whose section has ended: mostly final and official, some not."""
    ended_days = (today - info.end).days
    if status in ("dropped", "withdrawn"):
        return (
            eid,
            "W",
            True,
            False,
            None,
            True,
            None,
            datetime.combine(info.end, time(0, 0), UTC),
        )
    roll = rng.random()
    letter = rng.choice(["A", "A-", "B+", "B", "B-", "C+", "C", "D", "F"])
    posted = datetime.combine(info.end, time(12, 0), UTC) + timedelta(days=rng.randint(1, 5))
    touched = datetime.combine(info.end, time(9, 0), UTC)
    if ended_days > 60:
        if roll < 0.03:
            return (
                eid,
                "I",
                True,
                True,
                info.end + timedelta(days=rng.randint(60, 150)),
                True,
                posted,
                posted,
            )
        return (eid, letter, roll > 0.02, False, None, True, posted, posted)
    if roll < 0.15:
        return (eid, None, False, False, None, False, None, touched)  # blank
    if roll < 0.35:
        return (
            eid,
            letter,
            False,
            False,
            None,
            False,
            None,
            touched,
        )  # entered, not final, not official
    if roll < 0.40:
        return (eid, "I", False, True, info.end + timedelta(days=90), True, posted, posted)
    return (eid, letter, True, False, None, True, posted, posted)
