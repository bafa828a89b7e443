"""The SIS access layer: typed rows and async queries over the reference SIS schema ``sis``.

Notifiers and integrations read and write the school's data only through this module (or plain
SQL over the same tables), so a school whose SIS differs maps its tables onto ``sis`` once (see
docs/sis-schema.md) and every job type works. Every function takes an asyncpg connection or
pool, so callers choose the transaction.

    async with pool.acquire() as conn:
        who = await contacts(conn, [42, 43])
        members = await group_members(conn, "REGISTRAR")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeAlias

import asyncpg
import msgspec

from ..errors import InvalidInput

SCHEMA = "sis"
PACKAGE = "belltower.sis"

PersonStatus = Literal["student", "faculty", "staff", "prospect", "alumni"]
PERSON_STATUSES: tuple[PersonStatus, ...] = ("student", "faculty", "staff", "prospect", "alumni")

Executor: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Create or upgrade the ``sis`` schema; returns the migration versions applied."""
    from ..db import migrate as run_migrations

    return await run_migrations(pool, SCHEMA, PACKAGE)


# Rows -------------------------------------------------------------------------------------


class Person(msgspec.Struct, frozen=True):
    """A person in the SIS, with the demographics notifiers filter on."""

    id: int
    sis_id: str
    first_name: str
    last_name: str
    status: PersonStatus
    birth_date: date | None = None
    division: str | None = None
    campus: str | None = None
    department: str | None = None
    level: str | None = None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class Contact(msgspec.Struct, frozen=True):
    """How to reach a person: their primary e-mail and the cell phone they allow texts to."""

    person_id: int
    sis_id: str
    first_name: str
    last_name: str
    email: str | None
    cell_phone: str | None
    sms_ok: bool

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class GroupMember(msgspec.Struct, frozen=True):
    """A member of a notification group and the channels they want."""

    contact: Contact
    by_email: bool
    by_reminder: bool


class Section(msgspec.Struct, frozen=True):
    id: int
    course_code: str
    course_title: str
    section_code: str
    term_code: str
    starts_on: date
    ends_on: date
    capacity: int
    enrolled: int
    credits: Decimal
    lead_faculty_id: int | None

    @property
    def label(self) -> str:
        return f"{self.course_code}-{self.section_code} {self.course_title}"


class WaitlistEntry(msgspec.Struct, frozen=True):
    id: int
    section_id: int
    person_id: int
    position: int
    added_at: datetime


class Reminder(msgspec.Struct, frozen=True):
    """An in-app reminder for the console; ``occurrence_id`` makes a redelivered run add none."""

    person_id: int
    source: str
    title: str
    body_text: str
    body_html: str | None = None
    job_id: str | None = None
    occurrence_id: str | None = None


# Filters ----------------------------------------------------------------------------------


class Demographics(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What most notifiers can be limited by: codes of divisions, campuses, departments, levels,
    and module statuses. An empty list means no limit."""

    statuses: list[PersonStatus] = []
    divisions: list[str] = []
    campuses: list[str] = []
    departments: list[str] = []
    levels: list[str] = []

    def where(self, person: str, args: list[Any]) -> str:
        """SQL conditions on the people row aliased ``person``, appending their values to ``args``."""
        parts = ["TRUE"]
        if self.statuses:
            args.append(list(self.statuses))
            parts.append(f"{person}.status = ANY(${len(args)}::text[])")
        for values, table, column in (
            (self.divisions, "divisions", "division_id"),
            (self.campuses, "campuses", "campus_id"),
            (self.departments, "departments", "department_id"),
            (self.levels, "levels", "level_id"),
        ):
            if values:
                args.append([v.upper() for v in values])
                parts.append(
                    f"{person}.{column} IN (SELECT id FROM sis.{table} WHERE code = ANY(${len(args)}::text[]))"
                )
        return " AND ".join(parts)

    def where_section(self, section: str, course: str, args: list[Any]) -> str:
        """SQL conditions on a section (division, campus) and its course (department, level)."""
        parts = ["TRUE"]
        for values, table, column in (
            (self.divisions, "divisions", f"{section}.division_id"),
            (self.campuses, "campuses", f"{section}.campus_id"),
            (self.departments, "departments", f"{course}.department_id"),
            (self.levels, "levels", f"{course}.level_id"),
        ):
            if values:
                args.append([v.upper() for v in values])
                parts.append(
                    f"{column} IN (SELECT id FROM sis.{table} WHERE code = ANY(${len(args)}::text[]))"
                )
        return " AND ".join(parts)


async def check_demographics(db: Executor, filters: Demographics) -> None:
    """Refuse codes the SIS does not know, naming the field and the codes it has."""
    for field, values, table in (
        ("divisions", filters.divisions, "divisions"),
        ("campuses", filters.campuses, "campuses"),
        ("departments", filters.departments, "departments"),
        ("levels", filters.levels, "levels"),
    ):
        if not values:
            continue
        known = [r["code"] for r in await db.fetch(f"SELECT code FROM sis.{table} ORDER BY code")]
        unknown = sorted({v.upper() for v in values} - set(known))
        if unknown:
            raise InvalidInput(
                f"param.{field}",
                f"unknown code(s) {', '.join(unknown)}",
                "one of " + ", ".join(known),
            )


# People and contacts ----------------------------------------------------------------------

_PERSON_SELECT = """
SELECT p.id, p.sis_id, p.first_name, p.last_name, p.status, p.birth_date,
       d.code AS division, c.code AS campus, dp.code AS department, l.code AS level
  FROM sis.people p
  LEFT JOIN sis.divisions d ON d.id = p.division_id
  LEFT JOIN sis.campuses c ON c.id = p.campus_id
  LEFT JOIN sis.departments dp ON dp.id = p.department_id
  LEFT JOIN sis.levels l ON l.id = p.level_id
"""


def _person(row: asyncpg.Record) -> Person:
    return Person(**dict(row))


async def get_person(db: Executor, person_id: int) -> Person | None:
    row = await db.fetchrow(_PERSON_SELECT + " WHERE p.id = $1", person_id)
    return _person(row) if row else None


async def find_people(
    db: Executor, filters: Demographics | None = None, *, limit: int | None = None
) -> list[Person]:
    """People matching the demographics, ordered by last and first name."""
    args: list[Any] = []
    where = (filters or Demographics()).where("p", args)
    sql = _PERSON_SELECT + f" WHERE {where} ORDER BY p.last_name, p.first_name, p.id"
    if limit is not None:
        args.append(limit)
        sql += f" LIMIT ${len(args)}"
    return [_person(r) for r in await db.fetch(sql, *args)]


_CONTACT_SELECT = """
SELECT p.id AS person_id, p.sis_id, p.first_name, p.last_name,
       (SELECT e.address FROM sis.emails e WHERE e.person_id = p.id
         ORDER BY e.is_primary DESC, e.kind = 'school' DESC, e.id LIMIT 1) AS email,
       cell.number AS cell_phone, coalesce(cell.sms_ok, false) AS sms_ok
  FROM sis.people p
  LEFT JOIN LATERAL (SELECT number, sms_ok FROM sis.phones ph
                      WHERE ph.person_id = p.id AND ph.kind = 'cell'
                      ORDER BY ph.is_primary DESC, ph.id LIMIT 1) cell ON TRUE
"""


async def contacts(db: Executor, person_ids: Iterable[int]) -> dict[int, Contact]:
    """Primary e-mail and cell phone of each person, by person id (missing ids are left out)."""
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    rows = await db.fetch(_CONTACT_SELECT + " WHERE p.id = ANY($1::bigint[])", ids)
    return {r["person_id"]: Contact(**dict(r)) for r in rows}


async def group_members(db: Executor, group_code: str) -> list[GroupMember]:
    """The members of a notification group; InvalidInput names the groups that exist if it is unknown."""
    group = await db.fetchval("SELECT id FROM sis.notification_groups WHERE code = $1", group_code)
    if group is None:
        known = [
            r["code"]
            for r in await db.fetch("SELECT code FROM sis.notification_groups ORDER BY code")
        ]
        raise InvalidInput(
            "param.group",
            f"no notification group {group_code!r}",
            "one of " + (", ".join(known) or "(none defined)"),
        )
    rows = await db.fetch(
        "SELECT person_id, by_email, by_reminder FROM sis.notification_group_members WHERE group_id = $1",
        group,
    )
    found = await contacts(db, [r["person_id"] for r in rows])
    return [
        GroupMember(found[r["person_id"]], r["by_email"], r["by_reminder"])
        for r in rows
        if r["person_id"] in found
    ]


Relationship = Literal["parent", "guardian", "relative"]
RELATIONSHIPS: tuple[Relationship, ...] = ("parent", "guardian", "relative")
GuardianRelationships = Annotated[
    tuple[Relationship, ...],
    msgspec.Meta(min_length=1, description="which guardians: parent, guardian (legal), relative"),
]
"""The job parameter choosing which of a student's guardians are told."""


class Guardian(msgspec.Struct, frozen=True):
    """A student's guardian the school may contact about them, and how to reach them."""

    guardian_id: int
    student_id: int
    sis_id: str
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    sms_ok: bool
    relationship: Relationship
    is_primary: bool

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


async def guardians_of(
    db: Executor,
    student_ids: Iterable[int],
    relationships: Sequence[Relationship] = RELATIONSHIPS,
    *,
    primary_only: bool = False,
) -> dict[int, list[Guardian]]:
    """The guardians of each student with one of ``relationships`` whom the school may contact
    about that student (``student_guardians.contact_allowed``), primary first; ``primary_only``
    keeps the first contact (``is_primary``) alone."""
    ids = sorted(set(student_ids))
    if not ids:
        return {}
    rows = await db.fetch(
        """SELECT g.id AS guardian_id, sg.student_id, g.sis_id, g.first_name, g.last_name,
                  g.email, g.phone, g.sms_ok, sg.relationship, sg.is_primary
             FROM sis.student_guardians sg JOIN sis.guardians g ON g.id = sg.guardian_id
            WHERE sg.student_id = ANY($1::bigint[]) AND sg.contact_allowed
              AND sg.relationship = ANY($2::text[]) AND (sg.is_primary OR NOT $3)
            ORDER BY sg.student_id, sg.is_primary DESC, g.id""",
        ids, list(relationships), primary_only,
    )  # fmt: skip
    out: dict[int, list[Guardian]] = {}
    for r in rows:
        out.setdefault(r["student_id"], []).append(Guardian(**dict(r)))
    return out


# Sections and waitlists -------------------------------------------------------------------

_SECTION_SELECT = """
SELECT s.id, c.code AS course_code, c.title AS course_title, s.section_code, t.code AS term_code,
       s.starts_on, s.ends_on, s.capacity, s.enrolled, c.credits, s.lead_faculty_id
  FROM sis.sections s
  JOIN sis.courses c ON c.id = s.course_id
  JOIN sis.terms t ON t.id = s.term_id
"""


async def get_section(db: Executor, section_id: int) -> Section | None:
    row = await db.fetchrow(_SECTION_SELECT + " WHERE s.id = $1", section_id)
    return Section(**dict(row)) if row else None


async def sections_with_waitlist_and_seats(db: Executor) -> list[Section]:
    """Sections with someone waiting and fewer enrolled than seats, in id order."""
    rows = await db.fetch(
        _SECTION_SELECT
        + """ WHERE s.enrolled < s.capacity
                AND EXISTS (SELECT 1 FROM sis.waitlist w WHERE w.section_id = s.id AND w.state = 'waiting')
              ORDER BY s.id"""
    )
    return [Section(**dict(r)) for r in rows]


async def waitlist(db: Executor, section_id: int) -> list[WaitlistEntry]:
    """Who is waiting for a section, in waitlist order."""
    rows = await db.fetch(
        "SELECT id, section_id, person_id, position, added_at FROM sis.waitlist "
        "WHERE section_id = $1 AND state = 'waiting' ORDER BY position, added_at, id",
        section_id,
    )
    return [WaitlistEntry(**dict(r)) for r in rows]


async def has_registration_hold(db: Executor, person_id: int, on: date) -> bool:
    """Whether a hold that blocks registration is active for the person on the given day."""
    return bool(
        await db.fetchval(
            """SELECT EXISTS (
                 SELECT 1 FROM sis.holds h JOIN sis.hold_types t ON t.code = h.hold_type
                  WHERE h.person_id = $1 AND t.blocks_registration AND h.released_at IS NULL
                    AND h.starts_on <= $2 AND (h.ends_on IS NULL OR h.ends_on >= $2))""",
            person_id,
            on,
        )
    )


async def term_credits(db: Executor, person_id: int, term_id: int) -> Decimal:
    """Credits the person is enrolled in for a term (enrolled or completed sections)."""
    value = await db.fetchval(
        """SELECT coalesce(sum(e.credits), 0) FROM sis.enrollments e
             JOIN sis.sections s ON s.id = e.section_id
            WHERE e.person_id = $1 AND s.term_id = $2 AND e.status IN ('enrolled', 'completed')""",
        person_id,
        term_id,
    )
    return Decimal(value)


async def enroll_from_waitlist(
    conn: asyncpg.Connection, entry: WaitlistEntry, *, changed_by: str
) -> int | None:
    """Enroll a waiting student into the section, in the caller's transaction; returns the enrollment id.

    None when the student already holds a seat in it (the entry is then removed from the list).

    Adds one seat to ``enrolled``, resolves the waitlist entry and logs an ``add`` schedule change.
    A student who dropped the section before is re-enrolled on the same enrollment row.
    """
    section = await conn.fetchrow(
        "SELECT s.term_id, c.credits FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id "
        "WHERE s.id = $1",
        entry.section_id,
    )
    current = await conn.fetchrow(
        "SELECT id, status FROM sis.enrollments WHERE person_id = $1 AND section_id = $2",
        entry.person_id,
        entry.section_id,
    )
    if current is not None and current["status"] in ("enrolled", "completed", "audit"):
        # Already holds a seat (registered by hand meanwhile): the waitlist entry is moot.
        await conn.execute(
            "UPDATE sis.waitlist SET state = 'removed', resolved_at = now() WHERE id = $1", entry.id
        )
        return None
    before = await term_credits(conn, entry.person_id, section["term_id"])
    enrollment_id = await conn.fetchval(
        """INSERT INTO sis.enrollments (person_id, section_id, status, credits, registered_at)
           VALUES ($1, $2, 'enrolled', $3, now())
           ON CONFLICT (person_id, section_id) DO UPDATE
              SET status = 'enrolled', credits = EXCLUDED.credits, dropped_at = NULL,
                  withdrawn_on = NULL, updated_at = now()
           RETURNING id""",
        entry.person_id,
        entry.section_id,
        section["credits"],
    )
    await conn.execute(
        "UPDATE sis.sections SET enrolled = enrolled + 1 WHERE id = $1", entry.section_id
    )
    await conn.execute(
        "UPDATE sis.waitlist SET state = 'enrolled', resolved_at = now() WHERE id = $1", entry.id
    )
    await conn.execute(
        """INSERT INTO sis.schedule_changes (person_id, section_id, term_id, action, credits,
                                             term_credits_before, term_credits_after, changed_by)
           VALUES ($1, $2, $3, 'add', $4, $5, $6, $7)""",
        entry.person_id,
        entry.section_id,
        section["term_id"],
        section["credits"],
        before,
        before + section["credits"],
        changed_by,
    )
    return int(enrollment_id)


async def assign_minor_indicators(db: Executor, today: date) -> int:
    """Give every student under 18 without a current ``minor`` indicator one, ending on their 18th birthday.

    What a SIS does on its own when a birth date is recorded; returns how many were added.
    """
    result = await db.execute(
        """INSERT INTO sis.person_indicators (person_id, indicator, starts_on, ends_on)
           SELECT p.id, 'minor', $1::date, (p.birth_date + interval '18 years')::date
             FROM sis.people p
            WHERE p.status = 'student' AND p.birth_date IS NOT NULL
              AND (p.birth_date + interval '18 years')::date > $1::date
              AND NOT EXISTS (SELECT 1 FROM sis.person_indicators i
                               WHERE i.person_id = p.id AND i.indicator = 'minor'
                                 AND (i.ends_on IS NULL OR i.ends_on > $1::date))
           ON CONFLICT DO NOTHING""",
        today,
    )
    return int(result.split()[-1])


# Reminders --------------------------------------------------------------------------------


async def add_reminders(db: Executor, reminders: Sequence[Reminder]) -> int:
    """Store in-app reminders; one already stored for the same person, source and occurrence is kept.

    Returns how many were new.
    """
    if not reminders:
        return 0
    columns = ("person_id", "source", "title", "body_text", "body_html", "job_id", "occurrence_id")
    rows = await db.fetch(
        f"""INSERT INTO sis.reminders ({", ".join(columns)})
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::text[])
            ON CONFLICT (person_id, source, occurrence_id) DO NOTHING
            RETURNING id""",
        *([getattr(r, c) for r in reminders] for c in columns),
    )
    return len(rows)


async def reminders_for(
    db: Executor, person_id: int, *, unread_only: bool = True
) -> list[dict[str, Any]]:
    """A person's reminders, newest first, for the console."""
    where = "AND read_at IS NULL AND dismissed_at IS NULL" if unread_only else ""
    rows = await db.fetch(
        f"SELECT * FROM sis.reminders WHERE person_id = $1 {where} ORDER BY created_at DESC, id DESC",
        person_id,
    )
    return [dict(r) for r in rows]


__all__ = [
    "PERSON_STATUSES",
    "SCHEMA",
    "Contact",
    "Demographics",
    "GroupMember",
    "Person",
    "PersonStatus",
    "Reminder",
    "Section",
    "WaitlistEntry",
    "add_reminders",
    "assign_minor_indicators",
    "check_demographics",
    "contacts",
    "enroll_from_waitlist",
    "find_people",
    "get_person",
    "get_section",
    "group_members",
    "has_registration_hold",
    "migrate",
    "reminders_for",
    "sections_with_waitlist_and_seats",
    "term_credits",
    "waitlist",
]


async def existing_person(db: Executor, sis_id: str, email: str) -> str | None:
    """The SIS id of the person with this SIS id or e-mail address, if there is one."""
    found: str | None = await db.fetchval(
        """SELECT p.sis_id FROM sis.people p WHERE p.sis_id = $1
           UNION ALL
           SELECT p.sis_id FROM sis.emails e JOIN sis.people p ON p.id = e.person_id
            WHERE lower(e.address) = lower($2) LIMIT 1""",
        sis_id,
        email,
    )
    return found


async def add_person(
    db: Executor, sis_id: str, first_name: str, last_name: str, *, status: PersonStatus,
    email: str, starts_on: date, birth_date: date | None = None, phone: str = "",
    email_kind: str = "personal",
) -> int:  # fmt: skip
    """A new person with their status history, primary e-mail and (if given) cell phone; the
    caller holds the transaction."""
    person: int = await db.fetchval(
        """INSERT INTO sis.people (sis_id, first_name, last_name, birth_date, status)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        sis_id, first_name, last_name, birth_date, status,
    )  # fmt: skip
    await db.execute(
        "INSERT INTO sis.person_statuses (person_id, status, starts_on) VALUES ($1, $2, $3)",
        person, status, starts_on,
    )  # fmt: skip
    await db.execute(
        "INSERT INTO sis.emails (person_id, kind, address, is_primary) VALUES ($1, $2, $3, true)",
        person, email_kind, email,
    )  # fmt: skip
    if phone:
        await db.execute(
            "INSERT INTO sis.phones (person_id, kind, number, is_primary) VALUES ($1, 'cell', $2, true)",
            person, phone,
        )  # fmt: skip
    return person
