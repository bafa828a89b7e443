"""The billing and financial-aid file jobs against the real SIS schema, a real SMTP sink and a
real SFTP server (asyncssh) standing in for Nelnet's and PeopleSoft's.

One clone of the demo school serves the module; each test makes its own people in a division of
its own and limits the jobs to it, so the demo's rows and the other tests' do not interfere.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from belltower.settings import Settings
from belltower_dev.standins.sftp import SftpStandIn
from tests.catalog.conftest import JobRunner, mails_to, text_of
from tests.catalog.school import School
from tests.conftest import cloned

D = Decimal


@pytest.fixture(scope="module")
def aid_database(pg_server: Any, sis_template_database: str) -> Iterator[str]:
    with cloned(pg_server, sis_template_database, "belltower_aid") as url:
        yield url


@pytest.fixture
async def runner(
    aid_database: str, mail_sink: Any, tmp_batch_folder: Path
) -> AsyncIterator[JobRunner]:
    r = JobRunner(Settings(database_url=aid_database, smtp_host=mail_sink.host, smtp_port=mail_sink.port,
                           batch_folder=tmp_batch_folder))  # fmt: skip
    yield r
    await r.db.close()


@pytest.fixture
async def conn(aid_database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(aid_database)
    yield c
    await c.close()


@pytest.fixture
def school(conn: asyncpg.Connection, sis_today: Any) -> School:
    return School(conn, sis_today)


def later(minutes: int = 1) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def drop(folder: Path, name: str, text: str | bytes) -> Path:
    """A partner file dropped two minutes ago (settled)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    old = time.time() - 120
    os.utime(path, (old, old))
    return path


async def test_billing_summary_writes_the_chosen_columns_once_per_occurrence(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path
) -> None:
    ada = await school.person("Ada", division="BILL")
    bob = await school.person("Bob", division="BILL")
    await school.post(ada, "TUIT", "1000.00")
    await school.post(ada, "PAY", "-400.00")
    await school.post(ada, "PELL", "-100.00")
    await school.post(bob, "TUIT", "500.00")
    await school.post(bob, "PAY", "-500.00")
    await conn.execute(
        "INSERT INTO sis.billing_accounts (person_id, paperless, statement_email) VALUES ($1, true, 'ada@home.example')",
        ada["id"],
    )
    params = {"divisions": ["BILL"], "term": "CURR", "columns": ["Student ID", "Email", "Paperless", "Balance"],
              "nonzero_only": True}  # fmt: skip
    first = await runner("finance.billing_summary", params, occurrence_id="occ-bill-1")
    [path] = (tmp_batch_folder / "billing").iterdir()
    assert first.status == "succeeded", first.text
    assert path.read_text().splitlines() == [
        "Student ID,Email,Paperless,Balance",
        f"{ada['sis_id']},ada@home.example,Y,500.00",
    ]
    path.unlink()
    again = await runner("finance.billing_summary", params, occurrence_id="occ-bill-1")
    assert "already wrote" in again.text and not path.exists()
    every = await runner(
        "finance.billing_summary", {"divisions": ["BILL"], "all_terms": True, "dry_run": True}
    )
    assert "would write 2 rows" in every.text and not path.exists()


async def test_powerfaids_flat_file_has_fixed_width_records_with_enrollment_status(
    runner: JobRunner, school: School, tmp_batch_folder: Path
) -> None:
    full, half = (
        await school.person("Fay", division="PFA"),
        await school.person("Hal", division="PFA"),
    )
    await school.person("Nia", division="PFA")  # no credits: left out
    for _ in range(4):
        await school.enroll(full, await school.section(division="PFA"))
    for _ in range(2):
        await school.enroll(half, await school.section(division="PFA"))
    ran = await runner("finance.powerfaids_export", {"divisions": ["PFA"], "term": "CURR"},
                       scheduled_for=datetime(2026, 3, 2, 6, tzinfo=UTC))  # fmt: skip
    assert ran.status == "succeeded", ran.text
    lines = (tmp_batch_folder / "powerfaids" / "PowerFAIDS_20260302.txt").read_text().splitlines()
    assert len(lines) == 2 and {len(line) for line in lines} == {194}
    by_id = {line[:12].strip(): line for line in lines}
    # Credits (7 wide) then the status (1): 12 credits of 12 is full time, 6 is half time.
    assert by_id[full["sis_id"]][102:110] == "  12.00F"
    assert by_id[half["sis_id"]][102:110] == "   6.00H"


async def test_ebill_exports_the_transactions_since_the_previous_export(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path
) -> None:
    eve = await school.person("Eve", division="EBL")
    await conn.execute(
        "INSERT INTO sis.billing_accounts (person_id, nelnet_customer_id) VALUES ($1, 'N-EVE')",
        eve["id"],
    )
    await school.post(eve, "TUIT", "700.00")
    params = {"divisions": ["EBL"]}
    at = datetime.now(UTC)
    one = await runner(
        "finance.nelnet_ebill_export", params, job_id="ebill", occurrence_id="e1", scheduled_for=at
    )
    await school.post(eve, "PAY", "-200.00")
    again = await runner(
        "finance.nelnet_ebill_export", params, job_id="ebill", occurrence_id="e1", scheduled_for=at
    )
    two = await runner("finance.nelnet_ebill_export", params, job_id="ebill", occurrence_id="e2",
                       scheduled_for=datetime.now(UTC) + timedelta(seconds=1))  # fmt: skip
    files = sorted((tmp_batch_folder / "nelnet" / "outbound").iterdir())
    assert one.status == two.status == "succeeded", one.text + two.text
    assert "already wrote" in again.text and len(files) == 2
    first, second = (f.read_text().splitlines() for f in files)
    assert (
        first[0].startswith("CustomerId|StudentId|TransactionId")
        and len(first) == second.__len__() == 2
    )
    assert first[1].startswith(f"N-EVE|{eve['sis_id']}|") and first[1].endswith("|700.00|CURR")
    assert second[1].split("|")[6] == "-200.00"


async def test_nelnet_end_of_day_files_download_once_import_once_and_tell_the_group(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path, tmp_path: Path,
    mail_sink: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ned = await school.person("Ned", division="NEL")
    staff = await school.person("Bursar", status="staff", division="NEL")
    await school.group("NELG", staff)
    remote = tmp_path / "nelnet-root" / "outbound"
    remote.mkdir(parents=True)
    sid = ned["sis_id"]
    (remote / "nelnet_eod_transactions_20260302.txt").write_text(
        "TransactionId|CustomerId|TransactionDate|TransactionType|Amount|TermCode|Description\r\n"
        f"NT-1|{sid}|2026-03-02|PAYMENT|150.00|CURR|Web payment\r\n"
        f"NT-2|{sid}|2026-03-02|ACH|50.00|CURR|\r\n"
        f"NT-3|{sid}|2026-03-02|ACH_RETURN|50.00|CURR|Returned ACH\r\n"
    )
    (remote / "nelnet_eod_agreements_20260302.txt").write_text(
        "AgreementId|CustomerId|PlanCode|TermCode|Status|Budget|Installments|EnrolledDate\r\n"
        f"AG-NED|{sid}|SPRING4|CURR|ACTIVE|2400.00|4|2026-03-01\r\n"
    )
    (remote / "unrelated.csv").write_text("x")
    async with SftpStandIn(tmp_path / "nelnet-root") as server:
        monkeypatch.setenv("BELLTOWER_SECRET_SFTP_KNOWN_HOSTS", server.known_hosts)
        monkeypatch.setenv("BELLTOWER_SECRET_NELNET_PASSWORD", server.password)
        sftp = {"host": "127.0.0.1", "port": server.port, "username": server.username, "remote_dir": "outbound",
                "password_secret": "nelnet-password"}  # fmt: skip
        got = await runner("finance.nelnet_batch_download", {"sftp": sftp}, occurrence_id="d1")
        again = await runner("finance.nelnet_batch_download", {"sftp": sftp}, occurrence_id="d2")
    assert got.status == "succeeded", got.text
    assert (
        got.summary == "downloaded 2 files from 127.0.0.1"
        and again.summary == "no new file on 127.0.0.1"
    )
    inbound = tmp_batch_folder / "nelnet" / "inbound"
    copy = (inbound / "nelnet_eod_transactions_20260302.txt").read_bytes()
    imported = await runner("finance.nelnet_batch_import", {"settle_s": 0}, occurrence_id="i1")
    assert imported.status == "succeeded", imported.text
    postings = await conn.fetch(
        "SELECT external_ref, amount, code FROM sis.transactions WHERE person_id = $1 ORDER BY external_ref",
        ned["id"],
    )
    assert [(p["external_ref"], p["amount"], p["code"]) for p in postings] == [
        ("NT-1", D("-150.00"), "PAY"), ("NT-2", D("-50.00"), "PAY"), ("NT-3", D("50.00"), "PAY")]  # fmt: skip
    plan = await conn.fetchrow(
        "SELECT status, budget, installments FROM sis.payment_plans WHERE external_ref = 'AG-NED'"
    )
    assert tuple(plan) == ("active", D("2400.00"), 4)
    assert sorted(p.name for p in inbound.iterdir()) == ["imported"]
    drop(inbound, "nelnet_eod_transactions_copy.txt", copy)  # the same file, dropped again
    twice = await runner("finance.nelnet_batch_import", {"settle_s": 0}, occurrence_id="i2")
    assert "already imported as nelnet_eod_transactions_20260302.txt" in twice.text
    assert (
        await conn.fetchval("SELECT count(*) FROM sis.transactions WHERE person_id = $1", ned["id"])
        == 3
    )
    told = await runner(
        "notifier.nelnet_plan_enrollments", {"group": "NELG", "divisions": ["NEL"]}, job_id="plans"
    )
    told_again = await runner(
        "notifier.nelnet_plan_enrollments", {"group": "NELG", "divisions": ["NEL"]}, job_id="plans"
    )
    [mail] = mails_to(mail_sink, staff["email"])
    assert told.status == told_again.status == "succeeded"
    assert (
        mail["Subject"] == "1 new Nelnet payment plan"
        and "SPRING4" in text_of(mail)
        and "AG-NED" in text_of(mail)
    )


async def test_a_nelnet_file_with_a_bad_row_is_refused_whole_naming_row_and_field(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path
) -> None:
    ola = await school.person("Ola", division="NLB")
    path = drop(tmp_batch_folder / "nelnet" / "inbound", "nelnet_eod_transactions_bad.txt",
        "TransactionId|CustomerId|TransactionDate|TransactionType|Amount|TermCode|Description\n"
        f"NB-1|{ola['sis_id']}|2026-03-02|PAYMENT|10.00||\n"
        f"NB-2|{ola['sis_id']}|2026-03-32|PAYMENT|ten||\n"
        f"NB-3|NOBODY|2026-03-02|PAYMENT|10.00||\n")  # fmt: skip
    ran = await runner("finance.nelnet_batch_import", {"settle_s": 0})
    assert ran.status == "failed"
    assert (
        "nelnet_eod_transactions_bad.txt row 3 field TransactionDate: '2026-03-32' is not a date"
        in ran.text
    )
    assert "nelnet_eod_transactions_bad.txt row 3 field Amount: 'ten' is not an amount" in ran.text
    assert (
        path.exists()
        and await conn.fetchval(
            "SELECT count(*) FROM sis.transactions WHERE person_id = $1", ola["id"]
        )
        == 0
    )
    path.write_text(path.read_text().replace("2026-03-32|PAYMENT|ten", "2026-03-02|PAYMENT|10.00"))
    os.utime(path, (time.time() - 120, time.time() - 120))
    unknown = await runner("finance.nelnet_batch_import", {"settle_s": 0})
    assert "row 4 field CustomerId: 'NOBODY' is no student in the SIS" in unknown.text
    assert (
        await conn.fetchval("SELECT count(*) FROM sis.transactions WHERE person_id = $1", ola["id"])
        == 0
    )


async def test_refund_responses_mark_refunds_and_charge_back_the_failed_ones_once(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path
) -> None:
    ria, sam = (
        await school.person("Ria", division="RFD"),
        await school.person("Sam", division="RFD"),
    )
    ok = await conn.fetchval(
        "INSERT INTO sis.refunds (person_id, amount, method, status) VALUES ($1, 120, 'ach', 'exported') RETURNING id",
        ria["id"],
    )
    bad = await conn.fetchval(
        "INSERT INTO sis.refunds (person_id, amount, method, status) VALUES ($1, 80, 'ach', 'exported') RETURNING id",
        sam["id"],
    )
    text = ("RefundId|CustomerId|Amount|Status|ReasonCode|Message|ProcessedDate\n"
            f"{ok}|{ria['sis_id']}|120.00|SENT|||2026-03-02\n"
            f"{bad}|{sam['sis_id']}|80.00|FAILED|R03|No account on file|2026-03-02\n")  # fmt: skip
    folder = tmp_batch_folder / "nelnet" / "refunds"
    drop(folder, "nelnet_refund_response_1.txt", text)
    dry = await runner("finance.nelnet_refund_process", {"settle_s": 0, "dry_run": True})
    assert "would be imported" in dry.text
    assert await conn.fetchval("SELECT status FROM sis.refunds WHERE id = $1", bad) == "exported"
    ran = await runner("finance.nelnet_refund_process", {"settle_s": 0}, occurrence_id="r1")
    assert ran.status == "succeeded", ran.text
    rows = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT * FROM sis.refunds WHERE id = ANY($1::bigint[])", [ok, bad]
        )
    }
    assert (
        rows[ok]["status"] == "sent"
        and rows[bad]["status"] == "failed"
        and rows[bad]["response_code"] == "R03"
    )
    back = await conn.fetchrow(
        "SELECT amount, code FROM sis.transactions WHERE id = $1",
        rows[bad]["chargeback_transaction_id"],
    )
    assert tuple(back) == (D("-80.00"), "REF")
    drop(folder, "nelnet_refund_response_2.txt", text)  # the same responses again
    await runner("finance.nelnet_refund_process", {"settle_s": 0}, occurrence_id="r1")
    assert (
        await conn.fetchval("SELECT count(*) FROM sis.transactions WHERE person_id = $1", sam["id"])
        == 1
    )


async def test_regent_disbursements_are_recorded_and_posted_once(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path
) -> None:
    una = await school.person("Una", division="RGT")
    head = ("student_id,award_year,award_id,fund_code,term_code,award_status,offered_amount,accepted_amount,"
            "disbursement_number,disbursement_amount,disbursement_date\n")  # fmt: skip
    first = (
        f"{una['sis_id']},2025-26,RA-1,PELL,CURR,accepted,3000.00,3000.00,1,1500.00,2026-01-15\n"
    )
    folder = tmp_batch_folder / "regent"
    drop(folder, "regent_1.csv", head + first)
    ran = await runner("finance.regent_award_disbursement", {"settle_s": 0})
    drop(
        folder,
        "regent_2.csv",
        head + first + first.replace(",1,1500.00,2026-01-15", ",2,1500.00,2026-02-15"),
    )
    ran2 = await runner("finance.regent_award_disbursement", {"settle_s": 0})
    assert ran.status == ran2.status == "succeeded", ran.text + ran2.text
    posted = await conn.fetch(
        "SELECT amount, external_ref FROM sis.transactions WHERE person_id = $1 ORDER BY external_ref",
        una["id"],
    )
    assert [(p["amount"], p["external_ref"]) for p in posted] == [
        (D("-1500.00"), "RA-1-1"),
        (D("-1500.00"), "RA-1-2"),
    ]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM sis.aid_disbursements d JOIN sis.aid_awards a ON a.id = d.award_id WHERE a.person_id = $1",
            una["id"],
        )
        == 2
    )
    drop(folder, "regent_3.csv", head + first.replace("PELL", "NOPE"))
    refused = await runner("finance.regent_award_disbursement", {"settle_s": 0})
    assert (
        refused.status == "failed" and "regent_3.csv row 2 field fund_code: 'NOPE'" in refused.text
    )


async def test_jfa_awards_waiting_are_reported_and_users_exported(
    runner: JobRunner,
    school: School,
    conn: asyncpg.Connection,
    tmp_batch_folder: Path,
    mail_sink: Any,
) -> None:
    vic = await school.person("Vic", division="JFA")
    staff = await school.person("Aid", status="staff", division="JFA")
    await school.group("JFAG", staff)
    for ref, processed in (("J-1", None), ("J-2", datetime.now(UTC))):
        await conn.execute(
            """INSERT INTO sis.aid_awards (person_id, award_year, fund_code, source, external_ref, offered, status, processed_at)
               VALUES ($1, '2025-26', 'SCH', 'jfa', $2, 900, 'offered', $3)""", vic["id"], ref, processed)  # fmt: skip
    ran = await runner("notifier.jfa_awards", {"group": "JFAG", "divisions": ["JFA"]})
    [mail] = mails_to(mail_sink, staff["email"])
    assert ran.status == "succeeded" and mail["Subject"] == "1 JFA award waiting to be processed"
    exported = await runner(
        "finance.jfa_user_export", {"divisions": ["JFA"], "term": "CURR", "statuses": ["student"]}
    )
    [path] = (tmp_batch_folder / "jfa").iterdir()
    lines = path.read_text().splitlines()
    assert exported.status == "succeeded" and lines[0].startswith("StudentId,LastName,FirstName")
    assert lines[1:] == [
        f"{vic['sis_id']},Tester,Vic,,2000-01-15,{vic['email']},,,,,,student,JFA,MAIN,BACH,0.00"
    ]


async def test_peoplesoft_export_is_transmitted_and_the_group_told_when_and_whether(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Path, tmp_path: Path,
    mail_sink: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    staff = await school.person("Ledger", status="staff", division="PSF")
    await school.group("PSFG", staff)
    await conn.execute("UPDATE sis.transactions SET created_at = now() - interval '3 days'")
    wes = await school.person("Wes", division="PSF")
    await school.post(wes, "TUIT", "1050.00")
    await school.post(wes, "PAY", "-50.00")
    root = tmp_path / "ps-root"
    root.mkdir()
    async with SftpStandIn(root) as server, SftpStandIn(root) as impostor:
        monkeypatch.setenv("BELLTOWER_SECRET_PS_PASSWORD", server.password)
        sftp = {"host": "127.0.0.1", "port": server.port, "username": server.username, "remote_dir": "gl",
                "password_secret": "ps-password", "known_hosts_secret": "ps-hosts"}  # fmt: skip
        params = {"sftp": sftp, "group": "PSFG", "accounts": {"TUIT": "400100"}}
        at = later(1)
        monkeypatch.setenv(
            "BELLTOWER_SECRET_PS_HOSTS",
            impostor.known_hosts.replace(str(impostor.port), str(server.port)),
        )
        failed = await runner(
            "finance.peoplesoft_export", params, job_id="ps", occurrence_id="p1", scheduled_for=at
        )
        monkeypatch.setenv("BELLTOWER_SECRET_PS_HOSTS", server.known_hosts)
        retried = await runner(
            "finance.peoplesoft_export", params, job_id="ps", occurrence_id="p1", scheduled_for=at
        )
        same = await runner(
            "finance.peoplesoft_export", params, job_id="ps", occurrence_id="p1", scheduled_for=at
        )
    assert failed.status == "failed" and "not transmitted" in (failed.error or "")
    assert retried.status == "succeeded", retried.text
    assert "nothing done again" in same.summary
    [sent] = (root / "gl").iterdir()
    lines = sent.read_text().splitlines()
    assert [line[32:42].strip() for line in lines] == ["PAY", "400100"]
    assert [line[42:58].strip() for line in lines] == ["-50.00", "1050.00"]
    subjects = [" ".join(m["Subject"].split()) for m in mails_to(mail_sink, staff["email"])]
    assert subjects == [
        f"PeopleSoft export {sent.name} NOT transmitted",
        f"PeopleSoft export {sent.name} transmitted",
    ]
    assert "UTC" in text_of(mails_to(mail_sink, staff["email"])[1])


async def test_conclusive_and_balance_exports_hold_the_students_records(
    runner: JobRunner, school: School, tmp_batch_folder: Path
) -> None:
    zoe = await school.person("Zoe", division="CNC")
    section = await school.section(division="CNC")
    eid = await school.enroll(zoe, section)
    await school.grade(eid, "A")
    await school.post(zoe, "TUIT", "300.00")
    course = await runner("exports.conclusive", {"divisions": ["CNC"]})
    balance = await runner("finance.nelnet_balance_export", {"divisions": ["CNC"]})
    [history] = (tmp_batch_folder / "conclusive").iterdir()
    [balances] = (tmp_batch_folder / "nelnet" / "outbound").iterdir()
    assert course.status == balance.status == "succeeded"
    row = history.read_text().splitlines()[1].split(",")
    assert row[0] == zoe["sis_id"] and row[5] == "CURR" and row[9:] == ["3.00", "A", "enrolled"]
    assert balances.read_text().splitlines()[1].split("|")[:6] == [
        zoe["sis_id"],
        zoe["sis_id"],
        "Tester",
        "Zoe",
        zoe["email"],
        "300.00",
    ]


@pytest.mark.parametrize(
    ("job_type", "params"),
    [
        ("finance.billing_summary", {"folder": "../outside"}),
        ("finance.nelnet_ebill_export", {"folder": "../outside"}),
        ("finance.nelnet_batch_import", {"folder": "../outside"}),
        ("finance.regent_award_disbursement", {"folder": "../outside"}),
    ],
)
async def test_a_folder_outside_the_batch_folder_is_refused_at_run_time_too(
    runner: JobRunner, tmp_batch_folder: Path, job_type: str, params: dict[str, Any]
) -> None:
    """A definition that reached the worker without the save-time check stays inert."""
    ran = await runner(job_type, params)
    assert ran.status == "failed" and "leaves the batch folder" in (ran.error or "")
    assert not (tmp_batch_folder.parent / "outside").exists()
