"""Focus's address and schedule housekeeping against the demo SIS: each changes what it says
once, and a re-run (or a redelivered occurrence) changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_addresses import MESSY

pytestmark = pytest.mark.slow


async def _addresses(conn: Any, school: Any) -> tuple[dict[str, Any], list[int]]:
    student = await school.person("Messy")
    ids = []
    for line, _ in MESSY:
        ids.append(
            await conn.fetchval(
                """INSERT INTO sis.addresses (person_id, kind, line1, city, region)
                   VALUES ($1, 'home', $2, '  Lakeside ', 'IL ') RETURNING id""",
                student["id"],
                line,
            )
        )
    return student, ids


async def test_address_corrections_then_parse_and_reruns_change_nothing(
    run_job, school, sis_conn
) -> None:
    student, ids = await _addresses(sis_conn, school)
    # The demo's (Faker's) addresses need abbreviations too: a dry run counts them all first.
    dry = await run_job("housekeeping.address_corrections", {"dry_run": True})
    assert dry.status == "succeeded" and "to correct (dry run: not changed)" in dry.summary
    assert (
        await sis_conn.fetchval("SELECT count(*) FROM sis.addresses WHERE line1 = $1", MESSY[0][0])
        == 1
    )
    ran = await run_job("housekeeping.address_corrections")
    assert ran.status == "succeeded", ran.error
    to_correct = dry.summary.split(", ")[1].split()[0]
    assert ran.summary.endswith(f", {to_correct} corrected"), (dry.summary, ran.summary)
    rows = await sis_conn.fetch(
        "SELECT line1, city, region FROM sis.addresses WHERE id = ANY($1::bigint[]) ORDER BY id",
        ids,
    )
    assert [r["line1"] for r in rows] == [c for _, c in MESSY]
    assert {(r["city"], r["region"]) for r in rows} == {("Lakeside", "IL")}
    again = await run_job("housekeeping.address_corrections")
    assert again.summary.endswith(", 0 corrected"), again.summary

    parsed = await run_job("housekeeping.parse_addresses")
    assert parsed.status == "succeeded", parsed.error
    parts = await sis_conn.fetchrow("SELECT * FROM sis.address_parts WHERE address_id = $1", ids[0])
    assert (parts["house_number"], parts["street_name"], parts["post_direction"]) == (
        "123",
        "Main",
        "SW",
    )
    assert f"address {ids[4]} ({student['sis_id']})  not a street address (PO Box)" in parsed.text
    again = await run_job("housekeeping.parse_addresses")
    assert again.summary.startswith("0 addresses parsed"), again.summary
    await sis_conn.execute(
        "UPDATE sis.addresses SET line1 = '500 W Lake Dr', updated_at = now() WHERE id = $1", ids[1]
    )
    changed = await run_job("housekeeping.parse_addresses")
    assert changed.summary.startswith("1 address parsed"), changed.summary
    street = await sis_conn.fetchval(
        "SELECT street_name FROM sis.address_parts WHERE address_id = $1", ids[1]
    )
    assert street == "Lake"


async def test_remove_scheduled_students_from_waitlist(run_job, school, sis_conn) -> None:
    section = await school.section()
    scheduled, waiting = await school.person("Scheduled"), await school.person("Waiting")
    await school.enroll(scheduled, section)
    for position, person in enumerate((scheduled, waiting), 1):
        await sis_conn.execute(
            "INSERT INTO sis.waitlist (section_id, person_id, position) VALUES ($1, $2, $3)",
            section, person["id"], position,
        )  # fmt: skip
    ran = await run_job("housekeeping.remove_scheduled_from_waitlist", {"terms": ["curr"]})
    assert ran.status == "succeeded", ran.error
    states = dict(
        await sis_conn.fetch(
            "SELECT person_id, state FROM sis.waitlist WHERE section_id = $1", section
        )
    )
    assert states == {scheduled["id"]: "removed", waiting["id"]: "waiting"}
    assert f"{scheduled['sis_id']} TST" in ran.text and "was #1 on the waitlist" in ran.text
    again = await run_job("housekeeping.remove_scheduled_from_waitlist", {"terms": ["CURR"]})
    assert again.summary == "0 scheduled students removed from waitlists"
    bad = await run_job("housekeeping.remove_scheduled_from_waitlist", {"terms": ["NOPE"]})
    assert bad.status == "failed" and "NOPE" in (bad.error or "")


async def test_master_schedule_snapshot_once_per_occurrence_keeping_the_newest(
    run_job, sis_conn
) -> None:
    sections, enrollments = await sis_conn.fetchrow(
        """SELECT (SELECT count(*) FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id WHERE t.code = 'CURR'),
                  (SELECT count(*) FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
                     JOIN sis.terms t ON t.id = s.term_id WHERE t.code = 'CURR')"""
    )
    params = {"terms": ["CURR"], "keep": 2}
    first = await run_job(
        "housekeeping.schedule_snapshot", params, job_id="snap", occurrence_id="o1"
    )
    assert first.status == "succeeded", first.error
    assert first.summary.endswith(f"{sections} sections, {enrollments} enrollments")
    redelivered = await run_job(
        "housekeeping.schedule_snapshot", params, job_id="snap", occurrence_id="o1"
    )
    assert "took its snapshot before" in redelivered.text
    stored = await sis_conn.fetchval("SELECT count(*) FROM sis.schedule_snapshot_rows")
    assert stored == sections + enrollments
    for occurrence in ("o2", "o3"):
        await run_job(
            "housekeeping.schedule_snapshot", params, job_id="snap", occurrence_id=occurrence
        )
    kept = [
        r[0]
        for r in await sis_conn.fetch(
            "SELECT occurrence_id FROM sis.schedule_snapshots ORDER BY id"
        )
    ]
    assert kept == ["o2", "o3"]
    assert await sis_conn.fetchval("SELECT count(*) FROM sis.schedule_snapshot_rows") == 2 * stored
    record = await sis_conn.fetchval(
        "SELECT record->>'section_code' FROM sis.schedule_snapshot_rows WHERE kind = 'section' LIMIT 1"
    )
    assert record
