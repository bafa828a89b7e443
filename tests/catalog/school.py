"""Targeted SIS rows for catalog tests, added next to the demo school.

Test people and sections go in their own division ``TST`` so a notifier limited to it sees only
what the test made, while a control row in another division shows that the limit works.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

_serial = itertools.count(1)


class School:
    def __init__(self, conn: asyncpg.Connection, today: date) -> None:
        self.conn = conn
        self.today = today
        self._division: dict[str, int] = {}

    async def division(self, code: str) -> int:
        if code not in self._division:
            self._division[code] = await self.conn.fetchval(
                """INSERT INTO sis.divisions (code, name) VALUES ($1, $1)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
                code,
            )
        return self._division[code]

    def days(self, n: int) -> date:
        """``n`` days after today (negative: before)."""
        return self.today + timedelta(days=n)

    async def person(
        self,
        first: str,
        *,
        status: str = "student",
        division: str = "TST",
        born: date | None = None,
        email: bool = True,
        added_at: datetime | None = None,
    ) -> dict[str, Any]:
        n = next(_serial)
        sis_id = f"T{n:05d}"
        added_at = added_at or datetime.now(UTC) - timedelta(days=400)
        pid = await self.conn.fetchval(
            """INSERT INTO sis.people (sis_id, first_name, last_name, status, birth_date, division_id,
                                       campus_id, level_id, created_at)
               VALUES ($1, $2, 'Tester', $3, $4, $5, 1, 3, $6) RETURNING id""",
            sis_id, first, status, born or date(2000, 1, 15), await self.division(division), added_at,
        )  # fmt: skip
        await self.conn.execute(
            "INSERT INTO sis.person_statuses (person_id, status, starts_on, added_at) VALUES ($1, $2, $3, $4)",
            pid, status, added_at.date(), added_at,
        )  # fmt: skip
        address = f"{first.lower()}.{sis_id.lower()}@test.example" if email else None
        if address:
            await self.conn.execute(
                "INSERT INTO sis.emails (person_id, kind, address, is_primary) VALUES ($1, 'school', $2, true)",
                pid,
                address,
            )
        return {"id": pid, "sis_id": sis_id, "email": address, "first": first}

    async def group(self, code: str, *members: dict[str, Any], reminder: bool = False) -> None:
        gid = await self.conn.fetchval(
            "INSERT INTO sis.notification_groups (code, name) VALUES ($1, $1) RETURNING id", code
        )
        for m in members:
            await self.conn.execute(
                "INSERT INTO sis.notification_group_members (group_id, person_id, by_email, by_reminder) "
                "VALUES ($1, $2, true, $3)",
                gid,
                m["id"],
                reminder,
            )

    async def section(
        self,
        *,
        lead: dict[str, Any] | None = None,
        starts: int = -40,
        ends: int = 60,
        division: str = "TST",
        capacity: int = 30,
        attendance_required: bool = True,
        credits: int = 3,
    ) -> int:
        n = next(_serial)
        course = await self.conn.fetchval(
            "INSERT INTO sis.courses (code, title, credits, department_id, level_id) "
            "VALUES ($1, $2, $3, 1, 3) RETURNING id",
            f"TST{n:03d}", f"Test course {n}", Decimal(credits),
        )  # fmt: skip
        term = await self.conn.fetchval("SELECT id FROM sis.terms WHERE code = 'CURR'")
        return await self.conn.fetchval(
            """INSERT INTO sis.sections (course_id, term_id, section_code, division_id, campus_id,
                                         lead_faculty_id, starts_on, ends_on, meeting_days, capacity,
                                         attendance_required)
               VALUES ($1, $2, '01', $3, 1, $4, $5, $6, 'MWF', $7, $8) RETURNING id""",
            course, term, await self.division(division), lead["id"] if lead else None,
            self.days(starts), self.days(ends), capacity, attendance_required,
        )  # fmt: skip

    async def enroll(
        self, person: dict[str, Any], section: int, status: str = "enrolled", **extra: Any
    ) -> int:
        columns = ["person_id", "section_id", "status", "credits", *extra]
        values = [person["id"], section, status, Decimal(3), *extra.values()]
        eid = await self.conn.fetchval(
            f"INSERT INTO sis.enrollments ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(values) + 1))}) RETURNING id",
            *values,
        )
        if status in ("enrolled", "completed"):
            await self.conn.execute(
                "UPDATE sis.sections SET enrolled = enrolled + 1 WHERE id = $1", section
            )
        return eid

    async def meeting(self, section: int, day: int) -> date:
        on = self.days(day)
        await self.conn.execute(
            "INSERT INTO sis.section_meetings (section_id, meets_on) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            section,
            on,
        )
        return on

    async def mark(self, section: int, person: dict[str, Any], day: int, mark: str) -> None:
        on = await self.meeting(section, day)
        await self.conn.execute(
            "INSERT INTO sis.attendance (section_id, person_id, meets_on, mark) VALUES ($1, $2, $3, $4)",
            section,
            person["id"],
            on,
            mark,
        )

    async def grade(self, enrollment: int, grade: str | None, **flags: Any) -> None:
        columns = ["enrollment_id", "grade", *flags]
        values = [enrollment, grade, *flags.values()]
        await self.conn.execute(
            f"INSERT INTO sis.grades ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(values) + 1))})",
            *values,
        )

    async def post(self, person: dict[str, Any], code: str, amount: str, day: int = -5) -> None:
        await self.conn.execute(
            "INSERT INTO sis.transactions (person_id, term_id, code, amount, posted_on) "
            "VALUES ($1, (SELECT id FROM sis.terms WHERE code = 'CURR'), $2, $3, $4)",
            person["id"], code, Decimal(amount), self.days(day),
        )  # fmt: skip

    async def change(
        self,
        person: dict[str, Any],
        section: int,
        action: str,
        before: int,
        after: int,
        at: datetime,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO sis.schedule_changes (person_id, section_id, term_id, action, credits,
                                                 term_credits_before, term_credits_after, changed_at)
               VALUES ($1, $2, (SELECT term_id FROM sis.sections WHERE id = $2), $3, 3, $4, $5, $6)""",
            person["id"], section, action, before, after, at,
        )  # fmt: skip
