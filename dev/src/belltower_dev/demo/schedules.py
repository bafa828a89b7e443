"""What Retitle Sections and Calculate Adult Fees (FPS) need of the demo school: each section's
stored title (the default title template over its course, period and lead teacher) and the
cost reporting codes of the Continuing Education schedules, some of whose 371 and 372 records
already carry the adult fee status K. Derived from rows already drawn, with no draw of its own,
so every other table keeps its rows."""

from __future__ import annotations

from belltower.sis import titles

from .codes import DIVISION_ID
from .model import DemoData

CONTINUING_EDUCATION = DIVISION_ID["CE"]
"""The Continuing Education division: the district's adult education."""

CRC_BY_COURSE = ("371", "372", "401", "409")
"""A CE course's cost reporting code, by course id modulo 4."""


def _columns(data: DemoData, table: str) -> dict[str, int]:
    return {c: i for i, c in enumerate(data.tables[table][0])}


def add_schedule_records(data: DemoData) -> None:
    pieces = titles.compile_title(titles.DEFAULT)
    course, person = _columns(data, "courses"), _columns(data, "people")
    courses = {r[course["id"]]: r for r in data.tables["courses"][1]}
    people = {r[person["id"]]: r for r in data.tables["people"][1]}
    columns, sections = data.tables["sections"]
    s = _columns(data, "sections")
    titled = []
    for row in sections:
        teacher = people.get(row[s["lead_faculty_id"]])
        parts = {
            "course_title": courses[row[s["course_id"]]][course["title"]],
            "period": row[s["period"]],
            "teacher_last": teacher[person["last_name"]] if teacher else None,
        }
        titled.append((*row, titles.section_title(pieces, parts)))
    data.add("sections", [*columns, "title"], titled)

    crc = {
        row[s["id"]]: CRC_BY_COURSE[row[s["course_id"]] % len(CRC_BY_COURSE)]
        for row in sections
        if row[s["division_id"]] == CONTINUING_EDUCATION
    }
    columns, enrollments = data.tables["enrollments"]
    e = _columns(data, "enrollments")
    rows = []
    for row in enrollments:
        code = crc.get(row[e["section_id"]])
        status = "K" if code in ("371", "372") and row[e["id"]] % 3 == 0 else None
        rows.append((*row, code, status))
    data.add("enrollments", [*columns, "cost_reporting_code", "adult_fee_status_first"], rows)
