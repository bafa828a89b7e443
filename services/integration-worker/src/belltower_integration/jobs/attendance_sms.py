"""``messaging.attendance_sms``: the seeds' Attendance SMS.

Texts the guardians of each student marked, on the day, with one of the attendance marks the
school chose (``attendance_sms_marks`` in ``sis.school_preferences``, the seeds' "Attendance
Mobile Alert" preference; the job's ``marks`` override it). A guardian is texted only with a phone
and SMS consent (``guardians.sms_ok``) and when the school may contact them about the student.
The texts go into the communication queue, which sends them inside the school's calling hours
and never to a number that opted out; each (student, day, guardian) is queued once.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from belltower import sis, templates
from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext, JobType

from ..guardian_mail import GuardianParams, Meta, Queued, enqueue
from ..report import Tally

Mark = Literal["absent", "tardy", "excused"]
DEFAULT_TEXT = (
    "{{ first_name }} {{ last_name }} was marked {{ marks | join(', ') }} on {{ day }}"
    "{% if sections %} ({{ sections | join(', ') }}){% endif %}. Please contact the school."
)

MARKED_SQL = """
SELECT p.id AS student_id, p.first_name, p.last_name,
       array_agg(DISTINCT a.mark ORDER BY a.mark) AS marks,
       array_agg(DISTINCT c.code || '-' || s.section_code) AS sections
  FROM sis.attendance a
  JOIN sis.people p ON p.id = a.person_id
  JOIN sis.sections s ON s.id = a.section_id
  JOIN sis.courses c ON c.id = s.course_id
 WHERE a.meets_on = $1 AND a.mark = ANY($2::text[])
 GROUP BY p.id ORDER BY p.last_name, p.first_name, p.id
"""


class AttendanceSmsParams(GuardianParams, kw_only=True, forbid_unknown_fields=True):
    marks: Annotated[
        list[Mark], Meta(description="marks that text the guardians; empty: the school preference")
    ] = []
    day: Annotated[date | None, Meta(description="the day to look at; default: today")] = None
    time_zone: Annotated[
        str | None, Meta(description="what 'today' means; default: the school's")
    ] = None
    text: Annotated[
        templates.TemplateText,
        Meta(description="the text (Jinja2: first_name, last_name, marks, sections, day)"),
    ] = DEFAULT_TEXT


async def run(ctx: JobContext, params: AttendanceSmsParams) -> None:
    templates.check_template(params.text, "param.text")
    pool = await ctx.db.pool()
    prefs = dict(await pool.fetch("SELECT key, value FROM sis.school_preferences"))
    marks = list(params.marks) or [
        m.strip() for m in prefs.get("attendance_sms_marks", "absent").split(",") if m.strip()
    ]
    day = params.day or _today(ctx, params.time_zone or prefs.get("time_zone", "UTC"))
    tally = Tally("Attendance SMS")
    tally.fact(f"{day.isoformat()}: students marked {', '.join(marks)}")
    async with pool.acquire() as conn, conn.transaction():
        students = await conn.fetch(MARKED_SQL, day, marks)
        family = await sis.guardians_of(
            conn, [s["student_id"] for s in students], params.guardian_relationships,
            primary_only=params.guardian_primary_only,
        )  # fmt: skip
        queued = [
            q
            for s in students
            for q in _texts(s, family.get(s["student_id"], []), day, params, tally)
        ]
        new = await enqueue(conn, queued)
    if len(queued) > new:
        tally.fact(f"{len(queued) - new} texts were queued by an earlier run and not again")
    tally.write(
        ctx,
        f"{len(students)} students marked {', '.join(marks)} on {day.isoformat()}: {new} texts queued "
        f"for guardians, {tally.skipped} guardians or students skipped",
    )


def _today(ctx: JobContext, zone_name: str) -> date:
    try:
        return ctx.scheduled_for.astimezone(ZoneInfo(zone_name)).date()
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("param.time_zone", f"{zone_name!r} is not a time zone",
                           "an IANA name such as America/New_York") from None  # fmt: skip


def _texts(
    student: Any,
    guardians: list[sis.Guardian],
    day: date,
    params: AttendanceSmsParams,
    tally: Tally,
) -> list[Queued]:
    who = f"{student['first_name']} {student['last_name']}"
    reachable = [g for g in guardians if g.phone and g.sms_ok]
    if not reachable:
        tally.skip(who, "no guardian with a phone and SMS consent the school may contact")
        return []
    context = {
        "first_name": student["first_name"], "last_name": student["last_name"],
        "marks": list(student["marks"]), "sections": sorted(student["sections"]), "day": day.isoformat(),
    }  # fmt: skip
    body = templates.render(params.text, "param.text", context).strip()
    out = []
    for g in reachable:
        assert g.phone is not None
        out.append(Queued(
            "sms", g.phone, "", body, f"attendance:{student['student_id']}:{day.isoformat()}:guardian:{g.guardian_id}",
            person_id=student["student_id"], guardian_id=g.guardian_id,
        ))  # fmt: skip
        tally.ok(f"{g.name} ({g.relationship} of {who})", "text queued")
    return out


job_type = JobType(
    name="messaging.attendance_sms",
    pool="integration",
    title="Attendance SMS",
    description=(
        "Sends text messages to parents/guardians for students who match the attendance codes "
        "selected in the school's Attendance Mobile Alert preference. The texts are queued for "
        "the Communication Queue, which sends them inside calling hours."
    ),
    params=AttendanceSmsParams,
    run=run,
)
