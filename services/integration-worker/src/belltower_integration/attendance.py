"""Writing attendance marks that an LMS recorded into the SIS (``sis.attendance``), shared by the
Edvance360 and Moodle attendance imports.

A mark is for a student, a course in a term (and a section, when the LMS knows it) and a day. It
lands on the student's section of that course in that term (enrolled, audit or completed) on a
day the section meets (``section_meetings``); anything else is skipped with the reason. Marks are
keyed by section, student and day, so importing the same marks again changes nothing: a mark is
inserted, updated when it differs (``overwrite``; otherwise a mark the SIS has is kept), or left
unchanged. All of one import is one transaction; a dry run makes the same checks and counts
and rolls it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from . import importing
from .report import Tally

Mark = Literal["present", "absent", "tardy", "excused"]
MARKS: tuple[str, ...] = ("present", "absent", "tardy", "excused")
WORDS = {
    "present": "present", "p": "present", "absent": "absent", "a": "absent",
    "tardy": "tardy", "late": "tardy", "l": "tardy", "t": "tardy",
    "excused": "excused", "e": "excused", "excused absence": "excused",
}  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One mark as the LMS gave it; ``record`` names it in the output (file line, session)."""

    record: str
    sis_id: str
    course: str
    term: str
    section: str | None
    day: date
    mark: str


def mark_of(text: str) -> str | None:
    return WORDS.get(" ".join(text.lower().split()))


ENROLLED_SQL = """
SELECT p.id AS person_id, p.sis_id, c.code AS course, t.code AS term, s.section_code, s.id AS section_id
  FROM sis.enrollments e
  JOIN sis.people p ON p.id = e.person_id
  JOIN sis.sections s ON s.id = e.section_id
  JOIN sis.courses c ON c.id = s.course_id
  JOIN sis.terms t ON t.id = s.term_id
 WHERE p.sis_id = ANY($1::text[]) AND e.status IN ('enrolled', 'audit', 'completed')
"""
MEETINGS_SQL = """
SELECT section_id, meets_on FROM sis.section_meetings
 WHERE section_id = ANY($1::bigint[]) AND meets_on BETWEEN $2 AND $3
"""
UPSERT_SQL = """
INSERT INTO sis.attendance AS a (section_id, person_id, meets_on, mark)
VALUES ($1, $2, $3, $4)
ON CONFLICT (section_id, person_id, meets_on) DO UPDATE
   SET mark = excluded.mark, recorded_at = now(), recorded_by = NULL
 WHERE a.mark IS DISTINCT FROM excluded.mark AND $5
RETURNING (xmax = 0) AS inserted
"""


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def line(self) -> str:
        return f"{self.inserted} marks added, {self.updated} changed, {self.unchanged} unchanged"


async def apply(conn: Any, rows: list[Row], tally: Tally, *, overwrite: bool,
                dry_run: bool) -> Counts:  # fmt: skip
    """Write ``rows`` in one transaction (rolled back when ``dry_run``)."""
    counts = Counts()
    if not rows:
        return counts
    async with importing.transaction(conn, dry_run):
        enrolled: dict[tuple[str, str, str], list[Any]] = {}
        for r in await conn.fetch(ENROLLED_SQL, sorted({row.sis_id for row in rows})):
            enrolled.setdefault((r["sis_id"], r["course"], r["term"]), []).append(r)
        sections = sorted({r["section_id"] for found in enrolled.values() for r in found})
        days = [row.day for row in rows]
        meets = {
            (m["section_id"], m["meets_on"])
            for m in await conn.fetch(MEETINGS_SQL, sections, min(days), max(days))
        }
        for row in rows:
            mark = mark_of(row.mark)
            if mark is None:
                tally.skip(
                    row.record, f"{row.mark!r} is not a mark (present, absent, tardy, excused)"
                )
                continue
            found = enrolled.get((row.sis_id, row.course, row.term), [])
            if row.section:
                found = [r for r in found if r["section_code"] == row.section]
            if len(found) != 1:
                where = (
                    f"{row.course}" + (f" {row.section}" if row.section else "") + f" in {row.term}"
                )
                why = "is not enrolled in" if not found else "is in more than one section of"
                tally.skip(row.record, f"{row.sis_id} {why} {where}")
                continue
            enrolment = found[0]
            if (enrolment["section_id"], row.day) not in meets:
                tally.skip(
                    row.record,
                    f"{row.course} {enrolment['section_code']} does not meet on {row.day.isoformat()}",
                )
                continue
            inserted = await conn.fetchval(
                UPSERT_SQL,
                enrolment["section_id"],
                enrolment["person_id"],
                row.day,
                mark,
                overwrite,
            )
            if inserted is None:
                counts.unchanged += 1
            elif inserted:
                counts.inserted += 1
                tally.ok()
            else:
                counts.updated += 1
                tally.ok()
    return counts
