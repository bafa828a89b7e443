"""The roster an LMS sync sends, read from the SIS in one snapshot: the chosen terms' courses
(one per course and term), their students and lead faculty, and who is enrolled where.

Neutral of any LMS: each sync maps these records to its LMS's fields. Enrolments are keyed
``<course key>|<SIS id>|<role>`` with role ``student`` or ``teacher``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from .jobs.canvas_export import ENROLLMENTS_SQL, PEOPLE_SQL, SECTIONS_SQL, TERMS_SQL, course_sis_id

ACTIVE = frozenset({"enrolled", "audit", "completed"})
Role = Literal["student", "teacher"]


@dataclass(frozen=True)
class Course:
    key: str
    code: str
    title: str
    term_code: str
    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class Enrolment:
    course: str
    user: str
    role: Role

    @property
    def key(self) -> str:
        return f"{self.course}|{self.user}|{self.role}"

    @staticmethod
    def of_key(key: str) -> Enrolment:
        course, user, role = key.split("|")
        return Enrolment(course, user, role)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Section:
    """One SIS section (an LMS that holds sections under courses, as Schoology does, takes
    these; ``key`` is ``<course key>-<section code>``, as the Canvas export names them)."""

    key: str
    id: int
    course_code: str
    title: str
    term_code: str
    section_code: str
    starts_on: date
    ends_on: date
    faculty: str | None


@dataclass
class Roster:
    people: dict[str, Any] = field(default_factory=dict)  # SIS id -> row of PEOPLE_SQL
    courses: dict[str, Course] = field(default_factory=dict)
    enrolments: dict[str, Enrolment] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    section_enrolments: dict[str, Enrolment] = field(default_factory=dict)
    """Enrolments by section: ``course`` is the section's key."""


async def read(conn: Any, terms: list[str], upcoming_days: int, today: date) -> Roster:
    rows = await conn.fetch(TERMS_SQL, terms, today, upcoming_days)
    sections = await conn.fetch(SECTIONS_SQL, [t["id"] for t in rows])
    enrollments = await conn.fetch(ENROLLMENTS_SQL, [s["id"] for s in sections])
    by_section = {s["id"]: s for s in sections}
    roster = Roster()

    def enrol(course: str, section: str, person: str, role: Role) -> None:
        e = Enrolment(course, person, role)
        roster.enrolments[e.key] = e
        by = Enrolment(section, person, role)
        roster.section_enrolments[by.key] = by

    def section_key(s: Any) -> str:
        return f"{course_sis_id(s['course_code'], s['term_code'])}-{s['section_code']}"

    for s in sections:
        key = course_sis_id(s["course_code"], s["term_code"])
        roster.courses.setdefault(
            key,
            Course(key, s["course_code"], s["title"], s["term_code"], s["starts_on"], s["ends_on"]),
        )
        roster.sections[section_key(s)] = Section(
            section_key(s), s["id"], s["course_code"], s["title"], s["term_code"],
            s["section_code"], s["starts_on"], s["ends_on"], s["faculty_sis_id"],
        )  # fmt: skip
        if s["faculty_sis_id"]:
            enrol(key, section_key(s), s["faculty_sis_id"], "teacher")
    for e in enrollments:
        if e["status"] in ACTIVE:
            s = by_section[e["section_id"]]
            key = course_sis_id(s["course_code"], s["term_code"])
            enrol(key, section_key(s), e["sis_id"], "student")
    users = sorted({e.user for e in roster.enrolments.values()})
    roster.people = {p["sis_id"]: p for p in await conn.fetch(PEOPLE_SQL, users)}
    return roster


Terms = Annotated[
    list[str], msgspec.Meta(description="Term codes to export; empty: current and upcoming")
]
UpcomingDays = Annotated[
    int, msgspec.Meta(ge=0, le=366, description="Terms starting within this many days count")
]
