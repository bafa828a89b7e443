"""Auto Waitlist Enroll: the notifier that acts, filling open seats from waitlists."""

from __future__ import annotations

from typing import Annotated, Any

from belltower import sis

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import (
    NAME,
    SECTION,
    SECTION_COLUMNS,
    STUDENT_COLUMNS,
    Channel,
    Meta,
)


class WaitlistParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
    terms: Annotated[
        list[str],
        Meta(description="term codes to fill waitlists in; empty: every term not yet ended"),
    ] = []
    notify_students: Annotated[bool, Meta(description="tell each student they were enrolled")] = (
        True
    )
    student_channel: Channel = "email"


async def _auto_waitlist(q: Query[WaitlistParams]) -> list[Row]:
    """Enroll waiting students in waitlist order where seats are open, skipping registration holds.

    Each section is filled in its own transaction with the section row locked, so two runs at
    once cannot hand out the same seat; what this occurrence enrolled is read back from the
    schedule-change log, so a redelivered run reports it again and enrolls nobody twice.
    """
    conn = q.conn
    changed_by = f"belltower:{q.occurrence_id}"
    terms = [t.upper() for t in q.params.terms]
    args: list[Any] = [q.today, terms]
    section_filter = q.demographics().where_section("s", "c", args)
    candidates = await conn.fetch(
        f"""SELECT s.id FROM sis.sections s
              JOIN sis.courses c ON c.id = s.course_id
              JOIN sis.terms t ON t.id = s.term_id
             WHERE s.enrolled < s.capacity AND s.ends_on >= $1
               AND (cardinality($2::text[]) = 0 OR t.code = ANY($2::text[]))
               AND EXISTS (SELECT 1 FROM sis.waitlist w WHERE w.section_id = s.id AND w.state = 'waiting')
               AND {section_filter}
             ORDER BY s.id""",
        *args,
    )
    skipped: dict[tuple[int, int], int] = {}
    for candidate in candidates:
        async with conn.transaction():
            seats = await conn.fetchrow(
                "SELECT capacity, enrolled FROM sis.sections WHERE id = $1 FOR UPDATE",
                candidate["id"],
            )
            open_seats = seats["capacity"] - seats["enrolled"]
            for entry in await sis.waitlist(conn, candidate["id"]):
                if open_seats <= 0:
                    break
                if await sis.has_registration_hold(conn, entry.person_id, q.today):
                    skipped[(entry.person_id, entry.section_id)] = entry.position
                    continue
                if await sis.enroll_from_waitlist(conn, entry, changed_by=changed_by) is not None:
                    open_seats -= 1
    records = await conn.fetch(
        f"""SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, t.code AS term,
                   w.position, 'enrolled' AS result
              FROM sis.schedule_changes x
              JOIN sis.people p ON p.id = x.person_id
              JOIN sis.sections s ON s.id = x.section_id
              JOIN sis.courses c ON c.id = s.course_id
              JOIN sis.terms t ON t.id = s.term_id
              LEFT JOIN LATERAL (SELECT position FROM sis.waitlist w WHERE w.section_id = x.section_id
                                   AND w.person_id = x.person_id AND w.state = 'enrolled'
                                 ORDER BY w.resolved_at DESC LIMIT 1) w ON TRUE
             WHERE x.changed_by = $1 AND x.action = 'add'
             ORDER BY section, w.position""",
        changed_by,
    )
    rows = [Row(r["person_id"], f"section:{r['section_id']}", dict(r)) for r in records]
    if skipped:
        held = await conn.fetch(
            f"""SELECT p.id AS person_id, {NAME}, s.id AS section_id, {SECTION}, t.code AS term
                  FROM unnest($1::bigint[], $2::bigint[]) AS k(person_id, section_id)
                  JOIN sis.people p ON p.id = k.person_id
                  JOIN sis.sections s ON s.id = k.section_id
                  JOIN sis.courses c ON c.id = s.course_id
                  JOIN sis.terms t ON t.id = s.term_id
                 ORDER BY section, name""",
            [k[0] for k in skipped],
            [k[1] for k in skipped],
        )
        for r in held:
            values = dict(r) | {
                "position": skipped[(r["person_id"], r["section_id"])],
                "result": "skipped: registration hold",
            }
            rows.append(
                Row(r["person_id"], f"section:{r['section_id']}", values, tell_person=False)
            )
    return rows


auto_waitlist_enroll = Notifier(
    name="notifier.auto_waitlist_enroll",
    title="Notifier: Auto Waitlist Enroll",
    description=(
        "When a course has no available seats, a student can be added to Wait List, either by an "
        "administrator or from Student or Faculty Advisor registration. The Auto Waitlist Enroll "
        "notification assignment checks the waitlist for all courses and automatically enrolls any "
        "students on those waitlists when there is space available. Students are added to courses "
        "based on the order they were added to the waitlist. The only exception is students who have "
        "registration holds. These students are skipped, with the next person on the list who does "
        "not have an active registration hold taking their spot. The Auto Waitlist Enroll notifier "
        "should be run frequently during the registration and add/drop periods and should be set to "
        "end on the last day of add/drop."
    ),
    params=WaitlistParams,
    select=_auto_waitlist,
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("term", "Term"),
        ("position", "Waitlist position"),
        ("result", "Result"),
    ),
    subject="Auto waitlist enroll: "
    "{{ rows | selectattr('result', 'eq', 'enrolled') | list | length | counted('student') }} enrolled",
    intro="Seats opened in these sections; waiting students were enrolled in waitlist order "
    "(students with a registration hold are skipped):",
    student_subject="You are enrolled from the waitlist",
    student_intro="A seat opened and you have been enrolled in:",
)
