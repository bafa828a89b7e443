"""Exports to the batch folder from the demo school: Name CSV Export and SchoolMessenger."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from belltower_integration.jobs import name_csv_export, schoolmessenger
from tests.catalog.integrations_support import Env, open_env


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder: Path, mail_sink) -> AsyncIterator[Env]:
    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


def read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


async def test_name_csv_export_lists_students_and_faculty_with_email_and_cell(
    env: Env, tmp_batch_folder: Path
) -> None:
    # A staff member who also teaches (a second, current status) is in the export too.
    teaching = await env.fetchrow(
        "SELECT id, first_name, last_name FROM sis.people WHERE status = 'staff' ORDER BY id LIMIT 1"
    )
    await env.execute(
        "INSERT INTO sis.person_statuses (person_id, status, starts_on) VALUES ($1, 'faculty', current_date - 30)",
        teaching["id"],
    )
    expected = 1 + await env.fetchval(
        "SELECT count(*) FROM sis.people WHERE status IN ('student', 'faculty')"
    )
    run = await env.run(name_csv_export.job_type)
    rows = read(tmp_batch_folder / "exports" / "NameExport.csv")
    assert rows[0] == ["First Name", "Last Name", "Email Address", "Cell Phone Number"]
    assert len(rows) - 1 == expected > 2000
    person = await env.fetch(
        """SELECT p.first_name, p.last_name, e.address, f.number FROM sis.people p
             JOIN sis.emails e ON e.person_id = p.id AND e.is_primary
             JOIN sis.phones f ON f.person_id = p.id AND f.kind = 'cell'
            WHERE p.status = 'faculty' ORDER BY p.id LIMIT 1"""
    )
    assert list(person[0].values()) in rows[1:]
    assert any(row[:2] == [teaching["first_name"], teaching["last_name"]] for row in rows)
    staff_email = await env.fetchval(
        "SELECT e.address FROM sis.people p JOIN sis.emails e ON e.person_id = p.id "
        "WHERE p.status = 'staff' AND p.id <> $1 LIMIT 1",
        teaching["id"],
    )
    assert all(staff_email not in row for row in rows)
    assert run.output.summary == f"exports/NameExport.csv: {expected} people, 0 skipped"
    assert f"{expected} processed, 0 skipped, 0 failed" in run.html
    assert [p.name for p in (tmp_batch_folder / "exports").iterdir()] == ["NameExport.csv"]


async def test_schoolmessenger_writes_students_faculty_staff_and_tells_the_group(
    env: Env, tmp_batch_folder: Path, mail_sink
) -> None:
    group = await env.fetchval("SELECT code FROM sis.notification_groups ORDER BY code LIMIT 1")
    members = await env.fetchval(
        """SELECT count(*) FROM sis.notification_group_members m JOIN sis.notification_groups g
             ON g.id = m.group_id WHERE g.code = $1 AND m.by_email""", group)  # fmt: skip
    await env.execute(
        "DELETE FROM sis.emails WHERE person_id = (SELECT id FROM sis.people WHERE status = 'staff' ORDER BY id LIMIT 1)"
    )
    await env.execute(
        "DELETE FROM sis.phones WHERE person_id = (SELECT id FROM sis.people WHERE status = 'staff' ORDER BY id LIMIT 1)"
    )
    people = await env.fetchval(
        "SELECT count(*) FROM sis.people WHERE status IN ('student', 'faculty', 'staff')"
    )
    run = await env.run(schoolmessenger.job_type, {"group": group, "notify": ["it@school.example"]})
    rows = read(tmp_batch_folder / "exports" / "schoolmessenger.csv")
    assert rows[0] == [
        "SIS ID",
        "Last Name",
        "First Name",
        "Email Address",
        "Phone Number",
        "Cell Phone Number",
    ]
    assert len(rows) - 1 == people  # every one of them, even the one who cannot be reached
    assert run.output.summary == f"exports/schoolmessenger.csv: {people} people, 0 skipped"
    assert "1 of them have no e-mail address and no phone number" in run.text
    mail = await mail_sink.wait_for(lambda m: "SchoolMessenger" in m["Subject"], timeout=10)
    assert "it@school.example" in mail.envelope_to and len(mail.envelope_to) == members + 1
    assert f"{people} processed, 0 skipped, 0 failed" in mail.get_body(("plain",)).get_content()
    again = await env.run(schoolmessenger.job_type)
    assert read(tmp_batch_folder / "exports" / "schoolmessenger.csv") == rows
    assert again.output.summary == run.output.summary
