"""File-drop imports against the demo school: act only on the expected file, rename it with a
timestamp, carry unmatched records in a retries file, and never duplicate on a re-run."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from belltower_integration.jobs import frontline_leave, import_names, metlife, neogov
from tests.catalog.integrations_support import Env, open_env

NOW = {"settle_s": 0}


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder: Path, mail_sink) -> AsyncIterator[Env]:
    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


async def employees(env: Env, n: int) -> list[str]:
    rows = await env.fetch(
        "SELECT value FROM sis.person_external_ids WHERE system = 'hr' ORDER BY value LIMIT $1", n
    )
    return [r["value"] for r in rows]


def drop(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


async def test_frontline_leave_renames_retries_and_never_duplicates(
    env: Env, tmp_batch_folder: Path
) -> None:
    a, b, sub = await employees(env, 3)
    folder = tmp_batch_folder / "FromAesop"
    nothing = await env.run(frontline_leave.job_type, NOW)
    assert nothing.output.summary == "no Frontline_Leave.csv in FromAesop; nothing to do"
    drop(folder / "Frontline_Leave.csv",
         "absence_id,employee_id,date,leave_type,hours,reason,substitute_id,substitute_name\n"
         f"A1,{a},2026-03-02,Sick,8,flu,{sub},Sam Sub\n"
         f"A2,{b},2026-03-03,Personal,4,,,\n"
         "A3,EMP99999,2026-03-04,Sick,8,,,\n"
         f"A4,{a},03/05/2026,Sick,8,,,\n")  # fmt: skip
    first = await env.run(frontline_leave.job_type, NOW)
    assert "Frontline leave import: 2 processed, 1 skipped, 1 failed" in first.text
    assert "date '03/05/2026' is not YYYY-MM-DD" in first.text
    assert not (folder / "Frontline_Leave.csv").exists()
    [renamed] = [p for p in folder.iterdir() if p.name.startswith("Leave_")]
    assert re.fullmatch(r"Leave_\d{14}\.csv", renamed.name)
    retries = folder / "frontline_retries.csv"
    assert "A3,EMP99999" in retries.read_text()
    leave = await env.fetch(
        "SELECT external_id, hours, substitute_name, substitute_person_id IS NOT NULL AS matched "
        "FROM sis.leave_requests ORDER BY external_id"
    )
    assert [(r["external_id"], float(r["hours"]), r["substitute_name"], r["matched"]) for r in leave] == [
        ("A1:2026-03-02", 8.0, "Sam Sub", True), ("A2:2026-03-03", 4.0, None, False)
    ]  # fmt: skip

    still = await env.run(frontline_leave.job_type, NOW)
    assert "0 processed, 1 skipped, 0 failed" in still.text and retries.exists()
    await env.execute(  # the employee reaches the SIS after Frontline knew them
        "WITH p AS (INSERT INTO sis.people (sis_id, first_name, last_name, status) "
        "VALUES ('LATE1', 'Late', 'Hire', 'staff') RETURNING id) "
        "INSERT INTO sis.person_external_ids (person_id, system, value) SELECT id, 'hr', 'EMP99999' FROM p"
    )
    retried = await env.run(frontline_leave.job_type, NOW)
    assert "1 processed, 0 skipped, 0 failed" in retried.text
    assert not retries.exists()
    assert await env.fetchval("SELECT count(*) FROM sis.leave_requests") == 3

    # The seeds' reset: rename the processed file back; payroll has paid A1 meanwhile.
    await env.execute(
        "UPDATE sis.leave_requests SET paid_at = now() WHERE external_id = 'A1:2026-03-02'"
    )
    renamed.rename(folder / "Frontline_Leave.csv")
    rerun = await env.run(frontline_leave.job_type, {**NOW, "skip_substitutes": True})
    assert "A1:2026-03-02  already paid by payroll; not changed" in rerun.text
    assert await env.fetchval("SELECT count(*) FROM sis.leave_requests") == 3
    assert (
        await env.fetchval(
            "SELECT substitute_name FROM sis.leave_requests WHERE external_id = 'A1:2026-03-02'"
        )
        == "Sam Sub"
    )


async def test_neogov_user_data_waits_in_retries_until_the_new_hire_arrives(
    env: Env, tmp_batch_folder: Path
) -> None:
    [known] = await employees(env, 1)
    neo = tmp_batch_folder / "neogov"
    drop(neo / "userdata" / "ad_export.txt",
         f"ein|username|email\n{known}|kjones01|\nN1001|mgarcia01|mgarcia@school.example\n")  # fmt: skip
    first = await env.run(neogov.user_data_type, NOW)
    assert "NeoGov user data: 1 processed, 1 skipped, 0 failed" in first.text
    retries = neo / "userdata" / "neogov_retries.csv"
    assert retries.read_text().splitlines() == [
        "ein|username|email",
        "N1001|mgarcia01|mgarcia@school.example",
    ]
    email_before = await env.fetchval(
        "SELECT e.address FROM sis.emails e JOIN sis.person_external_ids x ON x.person_id = e.person_id "
        "WHERE x.value = $1 AND e.is_primary", known)  # fmt: skip
    assert email_before  # an empty e-mail in the file never clears it
    assert await env.fetchval(
        "SELECT p.login_id FROM sis.people p JOIN sis.person_external_ids x ON x.person_id = p.id WHERE x.value = $1",
        known) == "kjones01"  # fmt: skip
    [done] = (neo / "done").iterdir()
    assert re.fullmatch(r"neogov_userdata_\d{14}\.csv", done.name)

    hires = "ein|first_name|last_name|email|hire_date|position|department\nN1001|Maria|Garcia||2026-08-15|Teacher|Science\n"
    drop(neo / "hires.csv", hires)
    hired = await env.run(neogov.new_hires_type, NOW)
    assert "NeoGov new hires: 1 processed, 0 skipped, 0 failed" in hired.text
    drop(neo / "hires.csv", hires)
    again = await env.run(neogov.new_hires_type, NOW)
    assert "0 processed, 1 skipped, 0 failed" in again.text and "already an employee" in again.text
    assert (
        await env.fetchval(
            "SELECT count(*) FROM sis.people WHERE last_name = 'Garcia' AND first_name = 'Maria' AND status = 'staff' AND sis_id = 'HRN1001'"
        )
        == 1
    )

    retried = await env.run(neogov.user_data_type, NOW)
    assert "1 processed, 0 skipped, 0 failed" in retried.text and not retries.exists()
    person = await env.fetch(
        "SELECT p.login_id, e.address FROM sis.people p JOIN sis.emails e ON e.person_id = p.id AND e.is_primary "
        "WHERE p.sis_id = 'HRN1001'")  # fmt: skip
    assert [tuple(r.values()) for r in person] == [("mgarcia01", "mgarcia@school.example")]
    quiet = await env.run(neogov.user_data_type, NOW)
    assert quiet.output.summary == "no user-data file in neogov/userdata; nothing to do"


async def test_metlife_applies_deductions_moves_the_file_and_mails_what_was_not_imported(
    env: Env, tmp_batch_folder: Path, mail_sink
) -> None:
    a, b = await employees(env, 2)
    params = {**NOW, "notify": ["payroll@school.example"]}
    first = await env.run(metlife.job_type, params)
    assert first.output.summary == "no MetLife.csv in metlife; nothing to do"
    assert (tmp_batch_folder / "metlife" / "received").is_dir()
    body = f"employee_id,last_name,first_name,coverage,premium\n{a},Doe,Jo,50000,12.50\n{b},Roe,Al,,$7.25\nX404,Nobody,No,,3\n"
    drop(tmp_batch_folder / "metlife" / "MetLife.csv", body)
    run = await env.run(metlife.job_type, params)
    assert "MetLife incoming: 2 processed, 0 skipped, 1 failed" in run.text
    assert "no employee with this id in the SIS" in run.text
    [moved] = (tmp_batch_folder / "metlife" / "received").iterdir()
    assert re.fullmatch(r"MetLife-\d{14}\.csv", moved.name)
    mail = await mail_sink.wait_for(lambda m: "MetLife" in m["Subject"], timeout=10)
    assert "X404" in mail.get_body(("plain",)).get_content()
    deductions = await env.fetch(
        "SELECT amount FROM sis.deductions WHERE code = 'METLIFE_SUPP_LIFE' ORDER BY amount"
    )
    assert [float(r["amount"]) for r in deductions] == [7.25, 12.5]
    drop(tmp_batch_folder / "metlife" / "MetLife.csv", body)
    again = await env.run(metlife.job_type, params)
    assert "0 processed, 2 skipped, 1 failed" in again.text
    assert await env.fetchval("SELECT count(*) FROM sis.deductions") == 2


async def test_import_names_creates_people_once(env: Env, tmp_batch_folder: Path) -> None:
    taken = await env.fetchval(
        "SELECT address FROM sis.emails WHERE is_primary ORDER BY id LIMIT 1"
    )
    people = await env.fetchval("SELECT count(*) FROM sis.people")
    body = ("first_name,last_name,email,status,birth_date,phone\n"
            "Grace,Hopper,ghopper@example.net,prospect,1990-12-09,555-201-0001\n"
            "Katherine,Johnson,kjohnson@example.net,,,\n"
            f"Already,There,{taken},,,\n"
            "Bad,Status,bad@example.net,wizard,,\n")  # fmt: skip
    drop(tmp_batch_folder / "import_names" / "names.csv", body)
    first = await env.run(import_names.job_type, NOW)
    assert "Import names: 2 processed, 1 skipped, 1 failed" in first.text
    assert "status 'wizard' is not one of" in first.text
    assert await env.fetchval("SELECT count(*) FROM sis.people") == people + 2
    drop(tmp_batch_folder / "import_names" / "names.csv", body)
    again = await env.run(import_names.job_type, NOW)
    assert "0 processed, 3 skipped, 1 failed" in again.text
    assert await env.fetchval("SELECT count(*) FROM sis.people") == people + 2
    assert len(list((tmp_batch_folder / "import_names" / "done").iterdir())) == 2


async def test_frontline_fetches_from_sftp_and_renames_the_file_on_the_server(
    env: Env, tmp_path: Path, tmp_batch_folder: Path, monkeypatch
) -> None:
    from belltower_dev.standins.sftp import SftpStandIn

    [a] = await employees(env, 1)
    root = tmp_path / "frontline-sftp"
    drop(root / "FromAesop" / "Frontline_Leave.csv",
         f"absence_id,employee_id,date,leave_type,hours\nB1,{a},2026-04-01,Sick,8\n")  # fmt: skip
    async with SftpStandIn(root) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_SFTP_KNOWN_HOSTS", server.known_hosts)
        monkeypatch.setenv("BELLTOWER_SECRET_FRONTLINE_PASSWORD", server.password)
        params = {"sftp_host": "127.0.0.1", "sftp_port": server.port, "sftp_username": server.username,
                  "sftp_password_secret": "frontline-password"}  # fmt: skip
        first = await env.run(frontline_leave.job_type, params)
        second = await env.run(frontline_leave.job_type, params)
    [remote] = (root / "FromAesop").iterdir()
    assert re.fullmatch(r"Leave_\d{14}\.csv", remote.name)
    assert "Frontline leave import: 1 processed, 0 skipped, 0 failed" in first.text
    assert "fetched /FromAesop/Frontline_Leave.csv from 127.0.0.1" in first.text
    assert second.output.summary == "no Frontline_Leave.csv in FromAesop; nothing to do"
    assert [p.name.startswith("Leave_") for p in (tmp_batch_folder / "FromAesop").iterdir()] == [
        True
    ]
    assert await env.fetchval("SELECT count(*) FROM sis.leave_requests") == 1


async def test_a_drop_still_arriving_is_left_and_an_empty_one_is_archived(
    env: Env, tmp_batch_folder: Path
) -> None:
    folder = tmp_batch_folder / "FromAesop"
    drop(folder / "Frontline_Leave.csv", "absence_id,employee_id,date,leave_type,hours\n")
    arriving = await env.run(frontline_leave.job_type)  # default settle_s: the file is seconds old
    assert arriving.output.summary == "Frontline_Leave.csv is still arriving; left for the next run"
    assert (folder / "Frontline_Leave.csv").exists()
    empty = await env.run(frontline_leave.job_type, NOW)
    assert "Frontline leave import: 0 processed, 0 skipped, 0 failed" in empty.text
    assert [p.name.startswith("Leave_") for p in folder.iterdir()] == [True]


async def test_a_long_import_reports_progress(env: Env, tmp_batch_folder: Path) -> None:
    rows = "".join(f"Pat,Number{i},pat{i}@example.net\n" for i in range(1000))
    drop(tmp_batch_folder / "import_names" / "names.csv", "first_name,last_name,email\n" + rows)
    run = await env.run(import_names.job_type, NOW)
    assert run.progress == [(500, 1000, "500 of 1000 names"), (1000, 1000, "1000 of 1000 names")]
    assert "Import names: 1000 processed, 0 skipped, 0 failed" in run.text
