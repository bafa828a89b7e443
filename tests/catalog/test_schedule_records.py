"""Retitle Sections and Calculate Adult Fees (FPS) (migration 0064) against the real SIS schema
and the demo school: each changes what it says once, a dry run writes nothing, a re-run changes
nothing, and a bad parameter is refused when the job is saved."""

from __future__ import annotations

from typing import Any

import pytest

from belltower.errors import InvalidInput
from belltower_integration.jobs import registry
from belltower_scheduler.catalog import validate_params


async def _titles(conn: Any, ids: list[int]) -> dict[int, str | None]:
    rows = await conn.fetch("SELECT id, title FROM sis.sections WHERE id = ANY($1::bigint[])", ids)
    return {r["id"]: r["title"] for r in rows}


async def test_retitle_sections_after_edits_made_straight_in_the_database(
    run_job, sis_conn
) -> None:
    # The demo stores the titles the default template gives: nothing to rename.
    first = await run_job("housekeeping.retitle_sections")
    assert first.status == "succeeded", first.error
    assert first.summary.startswith("Retitle sections: 0 sections retitled"), first.summary

    # "Run Query": a course retitled, a period and a teacher changed, an ended term's section too.
    current = await sis_conn.fetch(
        """SELECT s.id, s.course_id, s.period, c.title, p.last_name
             FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id
             JOIN sis.courses c ON c.id = s.course_id JOIN sis.people p ON p.id = s.lead_faculty_id
            WHERE t.code = 'CURR' ORDER BY s.id LIMIT 40"""
    )
    course = current[0]
    others = [r for r in current if r["course_id"] != course["course_id"]]
    period, teacher = others[0], others[1]
    await sis_conn.execute(
        "UPDATE sis.courses SET title = 'Applied Geometry' WHERE id = $1", course["course_id"]
    )
    await sis_conn.execute("UPDATE sis.sections SET period = '9' WHERE id = $1", period["id"])
    new_lead = await sis_conn.fetchrow(
        "SELECT id, last_name FROM sis.people WHERE status = 'faculty' AND last_name <> $1 LIMIT 1",
        teacher["last_name"],
    )
    await sis_conn.execute(
        "UPDATE sis.sections SET lead_faculty_id = $2 WHERE id = $1", teacher["id"], new_lead["id"]
    )
    ended = await sis_conn.fetchval(
        """SELECT s.id FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id
            WHERE t.code = 'PREV' AND s.course_id <> $1 LIMIT 1""",
        course["course_id"],
    )
    await sis_conn.execute("UPDATE sis.sections SET period = '8' WHERE id = $1", ended)
    renamed = await sis_conn.fetch(
        """SELECT s.id, s.period, p.last_name FROM sis.sections s
             JOIN sis.terms t ON t.id = s.term_id JOIN sis.people p ON p.id = s.lead_faculty_id
            WHERE s.course_id = $1 AND t.ends_on >= current_date""",
        course["course_id"],
    )
    expected = {r["id"]: f"{r['period']} - Applied Geometry - {r['last_name']}" for r in renamed}
    expected[period["id"]] = f"9 - {period['title']} - {period['last_name']}"
    expected[teacher["id"]] = f"{teacher['period']} - {teacher['title']} - {new_lead['last_name']}"
    before = await _titles(sis_conn, [*expected, ended])

    dry = await run_job("housekeeping.retitle_sections", {"dry_run": True})
    assert dry.status == "succeeded", dry.error
    assert f"{len(expected)} sections retitled" in dry.summary and "dry run" in dry.summary
    assert "Titles that would change (dry run)" in dry.text
    assert f'→ "{expected[period["id"]]}"' in dry.text
    assert await _titles(sis_conn, [*expected, ended]) == before

    ran = await run_job("housekeeping.retitle_sections")
    assert ran.status == "succeeded", ran.error
    assert ran.summary.startswith(f"Retitle sections: {len(expected)} sections retitled"), (
        ran.summary
    )
    after = await _titles(sis_conn, [*expected, ended])
    assert {i: after[i] for i in expected} == expected
    assert after[ended] == before[ended], "an ended term's section is left unless asked for"
    assert f'"{before[teacher["id"]]}" → "{expected[teacher["id"]]}"' in ran.text

    again = await run_job("housekeeping.retitle_sections")
    assert again.summary.startswith("Retitle sections: 0 sections retitled"), again.summary
    assert "Titles changed" not in again.text

    # Another template, one school and one term: only those sections, the list capped.
    scoped = {"title_template": "{course_code}-{section_code} {course_title}", "divisions": ["UG"],
              "terms": ["PREV"]}  # fmt: skip
    ug_prev = await sis_conn.fetchval(
        """SELECT count(*) FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id
             JOIN sis.divisions d ON d.id = s.division_id WHERE t.code = 'PREV' AND d.code = 'UG'"""
    )
    assert ug_prev > 50
    other = await run_job("housekeeping.retitle_sections", scoped)
    assert other.status == "succeeded", other.error
    assert f"{ug_prev} sections retitled, 0 unchanged in 1 school" in other.summary
    assert f"(50 of {ug_prev} shown)" in other.text and f"... and {ug_prev - 50} more" in other.text
    outside = await sis_conn.fetchval(
        "SELECT count(*) FROM sis.sections WHERE title ~ '^[A-Z]+[0-9]+-[0-9]+ '"
    )
    assert outside == ug_prev

    unknown = await run_job("housekeeping.retitle_sections", {"terms": ["NOPE"]})
    assert unknown.status == "failed" and "param.terms" in (unknown.error or "")
    sneaked = await run_job("housekeeping.retitle_sections", {"title_template": "{period.real}"})
    assert sneaked.status == "failed" and "param.title_template" in (sneaked.error or "")


@pytest.mark.unit
def test_a_title_template_is_refused_when_saved_unless_it_names_only_the_placeholders() -> None:
    kind = registry.get("housekeeping.retitle_sections")
    assert kind is not None
    info = kind.info()
    for template in (
        "{course_title.__class__.__mro__}",
        "{period[0]}",
        "{teacher_last!r}",
        "{course_title:>100000}",
        "{0} {}",
        "{room}",
        "{course_title",
        "{{ course_title }}{% if 1 %}",
    ):
        with pytest.raises(InvalidInput) as refused:
            validate_params(info, {"title_template": template})
        assert refused.value.field == "param.title_template", template
        assert "{course_title}" in (refused.value.accepted or "") and "{teacher_last}" in (
            refused.value.accepted or ""
        )
    with pytest.raises(InvalidInput) as refused:
        validate_params(info, {"title_template": "{room} - {course_title}"})
    assert "{room} is not a placeholder" in refused.value.reason
    fine = "{{{course_code}}} {section_code}: {course_title} ({teacher_first} {teacher_last})"
    assert validate_params(info, {"title_template": fine}) == {"title_template": fine}


async def test_calculate_adult_fees_sets_k_on_crc_371_and_372_schedules_once(
    run_job, school, sis_conn
) -> None:
    student, teacher = await school.person("Adult"), await school.person("Ada", status="faculty")
    section = await school.section(lead=teacher)
    rows = {
        "371": await school.enroll(student, section, cost_reporting_code="371",
                                   adult_fee_status_first="D", adult_fee_status_second="Q"),
        "372": await school.enroll(await school.person("Blank"), section, cost_reporting_code="372"),
        "done": await school.enroll(await school.person("Done"), section, cost_reporting_code="371",
                                    adult_fee_status_first="K"),
        "401": await school.enroll(await school.person("Other"), section, cost_reporting_code="401",
                                   adult_fee_status_first="K"),
        "373": await school.enroll(await school.person("Third"), section, cost_reporting_code="373"),
        "dropped": await school.enroll(await school.person("Gone"), section, "dropped",
                                       cost_reporting_code="372"),
    }  # fmt: skip

    async def statuses() -> dict[str, tuple[str | None, str | None]]:
        found = await sis_conn.fetch(
            """SELECT id, adult_fee_status_first AS f, adult_fee_status_second AS s
                 FROM sis.enrollments WHERE id = ANY($1::bigint[])""",
            list(rows.values()),
        )
        by_id = {r["id"]: (r["f"], r["s"]) for r in found}
        return {name: by_id[i] for name, i in rows.items()}

    before = await statuses()
    tst = {"divisions": ["TST"]}
    dry = await run_job("finance.calculate_adult_fees", {**tst, "dry_run": True})
    assert dry.status == "succeeded", dry.error
    assert "2 schedule records set to K, 1 already K, 1 K under another CRC" in dry.summary
    assert "dry run" in dry.summary and await statuses() == before
    assert f"{student['sis_id']} TST" in dry.text and "(CRC 371): D/Q → K/blank" in dry.text

    ran = await run_job("finance.calculate_adult_fees", tst)
    assert ran.status == "succeeded", ran.error
    assert "2 schedule records set to K, 1 already K, 1 K under another CRC" in ran.summary
    assert "cost reporting codes: 371, 372" in ran.text
    assert await statuses() == {
        "371": ("K", None), "372": ("K", None), "done": ("K", None), "401": ("K", None),
        "373": (None, None), "dropped": (None, None),
    }  # fmt: skip
    again = await run_job("finance.calculate_adult_fees", tst)
    assert "0 schedule records set to K, 3 already K" in again.summary, again.summary

    third = await run_job("finance.calculate_adult_fees", {**tst, "crc_codes": ["373"]})
    assert "1 schedule records set to K" in third.summary, third.summary
    assert (await statuses())["373"] == ("K", None)

    # The demo's Continuing Education schedules: every 371/372 record not dropped, once.
    due = await sis_conn.fetchval(
        """SELECT count(*) FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
             JOIN sis.terms t ON t.id = s.term_id JOIN sis.people p ON p.id = e.person_id
            WHERE e.cost_reporting_code IN ('371', '372') AND e.status <> 'dropped'
              AND t.ends_on >= current_date AND p.status = 'student'
              AND e.adult_fee_status_first IS DISTINCT FROM 'K'"""
    )
    assert due > 0
    demo = await run_job("finance.calculate_adult_fees")
    assert f"{due} schedule records set to K" in demo.summary, demo.summary
    assert "0 schedule records set to K" in (await run_job("finance.calculate_adult_fees")).summary


@pytest.mark.unit
def test_cost_reporting_codes_are_refused_when_saved_unless_three_digits() -> None:
    kind = registry.get("finance.calculate_adult_fees")
    assert kind is not None
    for codes in (["37"], ["371\n"], ["371", "A72"], []):
        with pytest.raises(InvalidInput) as refused:
            validate_params(kind.info(), {"crc_codes": codes})
        assert refused.value.field.startswith("param.crc_codes"), codes
    assert validate_params(kind.info(), {"crc_codes": "371,372,409"}) == {
        "crc_codes": ["371", "372", "409"]
    }
