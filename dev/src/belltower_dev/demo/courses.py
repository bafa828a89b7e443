"""The demo school's terms, courses, sections and their meeting days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from .codes import COURSE_TOPICS, DEPARTMENTS, DIVISION_ID
from .model import Draw, Row

_WEEKDAY = {"M": 0, "T": 1, "W": 2, "R": 3, "F": 4}


@dataclass
class Section:
    """What enrollment and attendance need to know of a section; ``row`` indexes its table row."""

    term: int
    credits: Decimal
    start: date
    end: date
    capacity: int
    row: int
    attendance: bool


@dataclass
class Offering:
    """The terms and the sections on offer; section rows stay lists until seats are counted."""

    terms: list[Row]
    sections: list[list[Any]] = field(default_factory=list)
    meetings: list[Row] = field(default_factory=list)
    info: dict[int, Section] = field(default_factory=dict)

    def finished_sections(self) -> list[Row]:
        return [tuple(row) for row in self.sections]


def add_terms(draw: Draw) -> list[Row]:
    """A term just ended, one in progress on ``today`` and one ahead."""
    today = draw.today
    terms: list[Row] = [
        (1, "PREV", "Previous term", today - timedelta(days=200), today - timedelta(days=75)),
        (2, "CURR", "Current term", today - timedelta(days=45), today + timedelta(days=60)),
        (3, "NEXT", "Next term", today + timedelta(days=90), today + timedelta(days=200)),
    ]
    draw.data.add(
        "terms",
        ["id", "code", "name", "starts_on", "ends_on", "add_drop_ends_on", "full_time_credits"],
        [(i, c, n, s, e, s + timedelta(days=14), Decimal(12)) for i, c, n, s, e in terms],
    )
    return terms


def add_courses(draw: Draw) -> list[Row]:
    """Ten courses per department."""
    rng = draw.rng
    courses: list[Row] = []
    cid = 0
    for dept, (code, name, div) in enumerate(DEPARTMENTS, 1):
        for number in rng.sample(range(100, 500), 10):
            cid += 1
            credits = Decimal(rng.choices([3, 4, 1], [80, 15, 5])[0])
            level = 4 if div == "GR" else 3
            topic = rng.choice(COURSE_TOPICS)
            courses.append(
                (cid, f"{code}{number}", f"{name}: {topic} {number // 100}", credits, dept, level)
            )
    draw.data.add(
        "courses", ["id", "code", "title", "credits", "department_id", "level_id"], courses
    )
    return courses


def draw_sections(draw: Draw, terms: list[Row], courses: list[Row], faculty: list[int]) -> Offering:
    """One to three sections per course and term; some current ones ended or start late.

    The rows are added to the tables once enrollment has counted their seats.
    """
    rng, today = draw.rng, draw.today
    offering = Offering(terms)
    sid = 0
    for term_id, _, _, t_start, t_end in terms:
        for course in courses:
            for n in range(rng.choices([1, 2, 3], [60, 30, 10])[0]):
                sid += 1
                start, end = t_start, t_end
                if term_id == 2:
                    kind = rng.random()
                    if kind < 0.12:  # first half of the term: already over
                        end = today - timedelta(days=rng.randint(3, 20))
                    elif kind < 0.20:  # late start: begins soon
                        start = today + timedelta(days=rng.randint(1, 10))
                days = rng.choice(["MWF", "TR", "MW"])
                capacity = rng.choice([15, 20, 25, 30, 35, 40])
                division = DIVISION_ID[DEPARTMENTS[course[4] - 1][2]]
                campus = rng.choices([1, 2, 3], [60, 25, 15])[0]
                offering.sections.append(
                    [sid, course[0], term_id, f"{n + 1:02d}", division, campus, rng.choice(faculty),
                     start, end, days, capacity, 0, campus != 3 or rng.random() < 0.3]
                )  # fmt: skip
                row = offering.sections[-1]
                offering.info[sid] = Section(
                    term_id, course[3], start, end, capacity, len(offering.sections) - 1, row[12]
                )
                _add_meetings(offering, sid, start, end, days)
    return offering


def _add_meetings(offering: Offering, sid: int, start: date, end: date, days: str) -> None:
    on = {_WEEKDAY[d] for d in days}
    day = start
    while day <= end:
        if day.weekday() in on:
            offering.meetings.append((sid, day))
        day += timedelta(days=1)
