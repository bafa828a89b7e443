"""The reference SIS schema migrates, and the demo school loads into it whole and consistent."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from belltower import sis
from belltower.errors import InvalidInput
from belltower_dev import demo

pytestmark = pytest.mark.slow


def test_demo_is_deterministic() -> None:
    day = date(2026, 3, 2)
    size = demo.DemoSize(students=200, faculty=20, staff=20, prospects=10, alumni=10)
    first = demo.generate(day, seed=7, size=size)
    again = demo.generate(day, seed=7, size=size)
    other = demo.generate(day, seed=8, size=size)
    assert first.tables == again.tables
    assert first.tables["people"] != other.tables["people"]


async def test_fresh_database_migrates_and_loads_the_demo(
    database_url: str, sis_today: date
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        assert (await sis.migrate(pool))[0] == 1
        assert await sis.migrate(pool) == []
        data = demo.generate(sis_today)
        async with pool.acquire() as conn:
            counts = await demo.load(conn, data)
            with pytest.raises(InvalidInput, match="already holds people"):
                await demo.load(conn, data)
        by_status = dict(
            await pool.fetch("SELECT status, count(*) FROM sis.people GROUP BY status")
        )
        assert by_status == {
            "student": 2500,
            "faculty": 120,
            "staff": 60,
            "prospect": 250,
            "alumni": 300,
        }
        for table, n in counts.items():
            assert await pool.fetchval(f"SELECT count(*) FROM sis.{table}") == n, table
        assert counts["enrollments"] > 15000
        assert counts["attendance"] > 50000
        # Seat counts agree with the enrollments that hold a seat.
        assert not await pool.fetchval(
            """SELECT count(*) FROM sis.sections s
                WHERE s.enrolled <> (SELECT count(*) FROM sis.enrollments e
                                      WHERE e.section_id = s.id AND e.status IN ('enrolled', 'completed'))"""
        )
        # Everyone has a primary e-mail; every lead faculty member is faculty; attendance is on
        # meetings that were held, for students of the section.
        assert not await pool.fetchval(
            "SELECT count(*) FROM sis.people p WHERE NOT EXISTS "
            "(SELECT 1 FROM sis.emails e WHERE e.person_id = p.id AND e.is_primary)"
        )
        assert await pool.fetchval(
            "SELECT bool_and(p.status = 'faculty') FROM sis.sections s JOIN sis.people p ON p.id = s.lead_faculty_id"
        )
        assert not await pool.fetchval(
            "SELECT count(*) FROM sis.attendance a WHERE a.meets_on >= $1 OR NOT EXISTS "
            "(SELECT 1 FROM sis.enrollments e WHERE e.section_id = a.section_id AND e.person_id = a.person_id)",
            sis_today,
        )
        # Something for each notifier to find: dues, credits, waitlists with open seats, minors.
        assert await pool.fetchval("SELECT count(*) FROM sis.balances WHERE balance > 0") > 100
        assert await pool.fetchval("SELECT count(*) FROM sis.balances WHERE balance < 0") > 20
        assert len(await sis.sections_with_waitlist_and_seats(pool)) > 0
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM sis.person_indicators WHERE indicator = 'minor'"
            )
            > 10
        )
        # Identities continue after the loaded ids.
        new_id = await pool.fetchval(
            "INSERT INTO sis.people (sis_id, first_name, last_name, status) VALUES ('X1', 'New', 'Person', 'prospect') RETURNING id"
        )
        assert new_id == 3231
    finally:
        await pool.close()


async def test_sis_database_fixture_holds_the_demo_and_the_services_schemas(
    sis_database: str,
) -> None:
    conn = await asyncpg.connect(sis_database)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM sis.people WHERE status = 'student'") == 2500
        )
        schemas = {r[0] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
        assert {"sis", "scheduler", "history"} <= schemas
        members = await sis.group_members(conn, "REGISTRAR")
        assert len(members) == 3 and all(m.contact.email for m in members)
        with pytest.raises(InvalidInput, match="REGISTRAR"):
            await sis.group_members(conn, "NOPE")
    finally:
        await conn.close()


async def test_make_dev_loads_the_demo_school_once(database_url: str) -> None:
    import io

    from belltower_dev.devstack import Terminal, load_demo_school

    out = io.StringIO()
    await load_demo_school(database_url, Terminal(out))
    await load_demo_school(database_url, Terminal(out))
    lines = out.getvalue().splitlines()
    assert "loaded the demo school into schema sis: 3230 people" in lines[0]
    assert "SIS schema holds 3230 people; demo data not loaded again" in lines[1]


async def test_access_layer_reads_people_sections_and_contacts(sis_database: str) -> None:
    conn = await asyncpg.connect(sis_database)
    try:
        grad = sis.Demographics(statuses=["student"], divisions=["gr"], campuses=["ONLINE"])
        people = await sis.find_people(conn, grad)
        expected = await conn.fetchval(
            """SELECT count(*) FROM sis.people p JOIN sis.divisions d ON d.id = p.division_id
                 JOIN sis.campuses c ON c.id = p.campus_id
                WHERE p.status = 'student' AND d.code = 'GR' AND c.code = 'ONLINE'"""
        )
        assert len(people) == expected > 0
        assert all(
            p.division == "GR" and p.campus == "ONLINE" and p.status == "student" for p in people
        )
        assert [p.last_name for p in people] == sorted(p.last_name for p in people)
        assert await sis.get_person(conn, people[0].id) == people[0]
        assert await sis.get_person(conn, -1) is None

        reach = await sis.contacts(conn, [p.id for p in people[:5]])
        assert set(reach) == {p.id for p in people[:5]}
        assert all(c.email and c.email.endswith("@belltower.edu") for c in reach.values())

        [open_section, *_] = await sis.sections_with_waitlist_and_seats(conn)
        assert open_section.enrolled < open_section.capacity
        assert await sis.get_section(conn, open_section.id) == open_section
        queue = await sis.waitlist(conn, open_section.id)
        assert [w.position for w in queue] == sorted(w.position for w in queue) and queue

        with pytest.raises(InvalidInput, match=r"param.campuses: unknown code\(s\) MOON"):
            await sis.check_demographics(conn, sis.Demographics(campuses=["moon"]))
    finally:
        await conn.close()
