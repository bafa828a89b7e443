"""The ERP finance jobs (finance.*, migration 0061) against the real SIS schema, the demo school
and the SMTP sink: invoices, cashouts, receipt PDFs, P-Card reminders, customer records.

One clone of the demo school serves the module; each test makes its own school (a division)
and limits the job to it, so the tests do not see each other's rows; one test runs every job
over the whole demo school.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from pypdf import PdfReader

from belltower.errors import InvalidInput
from belltower.settings import Settings
from belltower_integration.erp import JOB_TYPES
from belltower_integration.erp.invoices import installments, period_key
from belltower_integration.jobs import registry
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner, mails_to, text_of
from tests.catalog.school import School
from tests.conftest import cloned

D = Decimal
NY = ZoneInfo("America/New_York")
_n = itertools.count(1)


@pytest.fixture(scope="module")
def erp_database(pg_server: Any, sis_template_database: str) -> Iterator[str]:
    with cloned(pg_server, sis_template_database, "belltower_erp") as url:
        yield url


@pytest.fixture
async def runner(
    erp_database: str, mail_sink: Any, tmp_batch_folder: Any
) -> AsyncIterator[JobRunner]:
    r = JobRunner(
        Settings(
            database_url=erp_database,
            smtp_host=mail_sink.host,
            smtp_port=mail_sink.port,
            batch_folder=tmp_batch_folder,
        )
    )
    yield r
    await r.db.close()


@pytest.fixture
async def conn(erp_database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(erp_database)
    yield c
    await c.close()


@pytest.fixture
def school(conn: asyncpg.Connection, sis_today: Any) -> School:
    return School(conn, sis_today)


async def invoice(
    conn: asyncpg.Connection,
    person: dict[str, Any],
    module: str,
    lines: list[tuple[str, bool]],
    *,
    age: int = 0,
    today: date,
) -> int:
    n = next(_n)
    iid: int = await conn.fetchval(
        """INSERT INTO sis.erp_invoices (invoice_number, module, person_id, invoice_date)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        f"T-{module}-{n}", module, person["id"], today - timedelta(days=age),
    )  # fmt: skip
    for k, (amount, active) in enumerate(lines, 1):
        await conn.execute(
            """INSERT INTO sis.erp_invoice_allocations (invoice_id, line_number, item_code, gl_account,
                      amount, active) VALUES ($1, $2, 'ITEM', '4100-000', $3, $4)""",
            iid, k, D(amount), active,
        )  # fmt: skip
    return iid


async def money(
    conn: asyncpg.Connection,
    person: dict[str, Any],
    invoice_id: int | None,
    kind: str,
    amount: str,
    *,
    valid: bool = True,
    at: datetime | None = None,
    drawer: int | None = None,
    method: str = "card",
    reference: str = "",
) -> int:
    pid: int = await conn.fetchval(
        """INSERT INTO sis.erp_payments (invoice_id, person_id, kind, amount, method, valid, received_at,
                  drawer_id, reference, receipt_number)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
        invoice_id, person["id"], kind, D(amount), method, valid, at or datetime.now(UTC), drawer,
        reference, f"TR{next(_n):07d}",
    )  # fmt: skip
    return pid


@pytest.mark.unit
def test_intervals_installments_and_registration() -> None:
    assert period_key("annual", date(2026, 6, 30), None) == "2025-26"
    assert period_key("annual", date(2026, 7, 1), None) == "2026-27"
    assert period_key("monthly", date(2026, 12, 3), None) == "2026-12"
    assert period_key("weekly", date(2026, 12, 31), None) == "2026-W53"
    assert period_key("term", date(2026, 12, 3), None) is None
    plan = installments(D("100.00"), 3, date(2026, 1, 31), "monthly")
    assert plan == [
        (1, D("33.33"), date(2026, 1, 31)),
        (2, D("33.33"), date(2026, 2, 28)),
        (3, D("33.34"), date(2026, 3, 31)),
    ]
    assert [d for _, _, d in installments(D("10"), 3, date(2026, 1, 1), "biweekly")] == [
        date(2026, 1, 1), date(2026, 1, 15), date(2026, 1, 29),
    ]  # fmt: skip
    for job in JOB_TYPES:
        assert registry.get(job.name) is job and job.info().seeds, job.name
    receipts = registry.get("finance.receipt_pdfs")
    assert receipts is not None
    with pytest.raises(InvalidInput) as refused:
        receipts.decode_params({"days_back": 400})
    assert refused.value.field == "param.days_back"
    # when the job is saved: the folder stays in the batch folder, codes and e-mail are checked
    for name, bad in [
        ("finance.receipt_pdfs", {"folder": "../outside"}),
        ("finance.receipt_pdfs", {"folder": "/etc"}),
        ("finance.automatic_billing_invoices", {"rules": ["no spaces"]}),
        ("finance.pcard_reminder", {"administrator": "a@b\r\nBcc: x@y"}),
        ("finance.pcard_reminder", {"days": 0}),
        ("hr.update_employee_agreements", {}),
    ]:
        kind = registry.get(name)
        assert kind is not None
        with pytest.raises(InvalidInput):
            validate_params(kind.info(), bad)
    pdfs = registry.get("finance.receipt_pdfs")
    assert pdfs is not None and validate_params(pdfs.info(), {"folder": "receipts/2026"})
    voids = registry.get("finance.void_overdue_ar_invoices")
    assert voids is not None
    with pytest.raises(InvalidInput):
        voids.decode_params({"min_age_days": 0})


async def test_automatic_billing_invoices_once_per_interval(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    ann, ben = await s.person("Ann", division="ABI1"), await s.person("Ben", division="ABI1")
    await conn.execute("UPDATE sis.people SET level_id = 1 WHERE id = $1", ben["id"])
    rule = await conn.fetchval(
        """INSERT INTO sis.erp_automatic_invoices (code, description, interval, divisions, levels,
                  item_code, gl_account, amount, starts_on)
           VALUES ('T_WEEKLY', 'Bus pass', 'weekly', '{ABI1}', '{BACH}', 'BUS', '4500-000', 12.50, $1)
           RETURNING id""",
        s.days(-30),
    )
    params = {"divisions": ["ABI1"], "rules": ["T_WEEKLY"], "as_of": s.today.isoformat()}
    made = "SELECT person_id, period_key, total FROM sis.erp_invoices WHERE automatic_invoice_id = $1 ORDER BY id"

    dry = await runner("finance.automatic_billing_invoices", {**params, "dry_run": True})
    assert "1 invoiced" in dry.summary and await conn.fetch(made, rule) == []
    ran = await runner("finance.automatic_billing_invoices", params, occurrence_id="occ-abi")
    assert "1 invoiced, 0 already invoiced" in ran.summary, ran.text
    again = await runner("finance.automatic_billing_invoices", params, occurrence_id="occ-abi")
    assert "0 invoiced, 1 already invoiced" in again.summary
    week = period_key("weekly", s.today, None)
    assert [tuple(r) for r in await conn.fetch(made, rule)] == [(ann["id"], week, D("12.50"))]
    line = await conn.fetchrow(
        "SELECT a.amount, a.gl_account FROM sis.erp_invoice_allocations a JOIN sis.erp_invoices i "
        "ON i.id = a.invoice_id WHERE i.automatic_invoice_id = $1",
        rule,
    )
    assert tuple(line) == (D("12.50"), "4500-000")
    next_week = await runner(
        "finance.automatic_billing_invoices", {**params, "as_of": s.days(7).isoformat()}
    )
    assert "1 invoiced" in next_week.summary and len(await conn.fetch(made, rule)) == 2


async def test_void_overdue_ar_invoices(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s, t = school, school.today
    who = await s.person("Vic", division="VOID1")
    unpaid = await invoice(conn, who, "ar", [("50", True)], age=100, today=t)
    refunded = await invoice(conn, who, "ar", [("80", True)], age=100, today=t)
    await money(conn, who, refunded, "payment", "30")
    await money(conn, who, refunded, "refund", "30")
    bounced = await invoice(conn, who, "ar", [("20", True)], age=95, today=t)
    await money(conn, who, bounced, "payment", "20", valid=False)
    partly = await invoice(conn, who, "ar", [("60", True)], age=100, today=t)
    await money(conn, who, partly, "payment", "10")
    deferred = await invoice(conn, who, "ar", [("70", True)], age=100, today=t)
    await money(conn, who, deferred, "deferral", "70")
    young = await invoice(conn, who, "ar", [("40", True)], age=10, today=t)
    pos = await invoice(conn, who, "pos", [("40", True)], age=100, today=t)
    params = {"divisions": ["VOID1"], "min_age_days": 90, "as_of": t.isoformat()}
    voided = (
        "SELECT id FROM sis.erp_invoices WHERE person_id = $1 AND voided_on IS NOT NULL ORDER BY id"
    )

    dry = await runner("finance.void_overdue_ar_invoices", {**params, "dry_run": True})
    assert "3 voided" in dry.summary and await conn.fetch(voided, who["id"]) == []
    ran = await runner("finance.void_overdue_ar_invoices", params, occurrence_id="occ-void")
    assert (
        "3 voided, 1 of them refunded in full, 1 kept: deferred, 1 kept: partly paid" in ran.summary
    )
    again = await runner("finance.void_overdue_ar_invoices", params, occurrence_id="occ-void")
    assert "0 voided" in again.summary
    assert [r["id"] for r in await conn.fetch(voided, who["id"])] == [unpaid, refunded, bounced]
    assert {partly, deferred, young, pos}.isdisjoint(
        r["id"] for r in await conn.fetch(voided, who["id"])
    )


async def test_delete_stale_pos_invoices_and_the_table_update(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s, t = school, school.today
    who = await s.person("Pia", division="POS1")
    stale = await invoice(conn, who, "pos", [("10", False)], age=3, today=t)
    empty = await invoice(conn, who, "pos", [], age=3, today=t)
    paid_stale = await invoice(conn, who, "pos", [("10", False)], age=3, today=t)
    await money(conn, who, paid_stale, "payment", "10")
    live = await invoice(
        conn, who, "pos", [("30", True), ("20", True), ("5", False)], age=3, today=t
    )
    await money(conn, who, live, "payment", "40")
    ar_empty = await invoice(conn, who, "ar", [("10", False)], age=3, today=t)
    params = {"divisions": ["POS1"], "as_of": t.isoformat()}
    deleted = "SELECT id FROM sis.erp_invoices WHERE person_id = $1 AND deleted ORDER BY id"

    ran = await runner("finance.delete_stale_pos_invoices", params, occurrence_id="occ-stale")
    assert "2 flagged deleted, 1 kept: holds payments" in ran.summary, ran.text
    again = await runner("finance.delete_stale_pos_invoices", params, occurrence_id="occ-stale")
    assert "0 flagged deleted" in again.summary
    assert [r["id"] for r in await conn.fetch(deleted, who["id"])] == [stale, empty]
    assert ar_empty not in [r["id"] for r in await conn.fetch(deleted, who["id"])]

    dry = await runner("finance.pos_invoice_table_update", {**params, "dry_run": True})
    assert "(dry run" in dry.summary
    assert await conn.fetchval("SELECT total FROM sis.erp_invoices WHERE id = $1", live) == 0
    upd = await runner("finance.pos_invoice_table_update", params, occurrence_id="occ-table")
    assert "2 allocations updated" in upd.summary, upd.text
    row = await conn.fetchrow(
        "SELECT total, amount_paid, balance FROM sis.erp_invoices WHERE id = $1", live
    )
    assert tuple(row) == (D("50.00"), D("40.00"), D("10.00"))
    lines = "SELECT amount_paid FROM sis.erp_invoice_allocations WHERE invoice_id = $1 ORDER BY line_number"
    paid_lines = await conn.fetch(lines, live)
    assert [r[0] for r in paid_lines] == [D("30.00"), D("10.00"), D("0.00")]
    again = await runner("finance.pos_invoice_table_update", params, occurrence_id="occ-table")
    assert "0 invoices updated, 0 allocations updated" in again.summary
    await money(conn, who, live, "refund", "15")
    refunded = await runner("finance.pos_invoice_table_update", params)
    assert "1 invoices updated, 2 allocations updated" in refunded.summary
    balance = await conn.fetchval("SELECT balance FROM sis.erp_invoices WHERE id = $1", live)
    assert balance == D("25.00")
    assert [r[0] for r in await conn.fetch(lines, live)] == [D("25.00"), D("0.00"), D("0.00")]


async def test_payment_plan_invoices(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    who = await s.person("Pat", division="PLAN1")
    plan = await conn.fetchval(
        """INSERT INTO sis.erp_payment_plans (person_id, description, item_code, gl_account, total,
                  installments, frequency, first_due_on)
           VALUES ($1, 'Band trip plan', 'TRIP', '4120-000', 250.00, 4, 'monthly', $2) RETURNING id""",
        who["id"], date(2027, 1, 31),
    )  # fmt: skip
    params = {"divisions": ["PLAN1"]}
    made = "SELECT installment, total, due_date FROM sis.erp_invoices WHERE payment_plan_id = $1 ORDER BY installment"
    dry = await runner("finance.payment_plan_invoices", {**params, "dry_run": True})
    assert (
        "1 plans processed, 4 installment invoices" in dry.summary
        and await conn.fetch(made, plan) == []
    )
    ran = await runner("finance.payment_plan_invoices", params, occurrence_id="occ-plan")
    assert "1 plans processed, 4 installment invoices" in ran.summary
    again = await runner("finance.payment_plan_invoices", params, occurrence_id="occ-plan")
    assert "0 plans processed, 0 installment invoices" in again.summary
    assert [tuple(r) for r in await conn.fetch(made, plan)] == [
        (1, D("62.50"), date(2027, 1, 31)), (2, D("62.50"), date(2027, 2, 28)),
        (3, D("62.50"), date(2027, 3, 31)), (4, D("62.50"), date(2027, 4, 30)),
    ]  # fmt: skip
    assert await conn.fetchval(
        "SELECT count(*) FROM sis.erp_invoice_allocations a JOIN sis.erp_invoices i ON i.id = a.invoice_id "
        "WHERE i.payment_plan_id = $1", plan,
    ) == 4  # fmt: skip


async def drawer(conn: asyncpg.Connection, school: School, code: str, kind: str) -> int:
    did: int = await conn.fetchval(
        """INSERT INTO sis.erp_cash_drawers (code, name, kind, division_id, portal_enabled, settlement_time)
           VALUES ($1, $1, $2, $3, true, '15:00') RETURNING id""",
        code, kind, await school.division(code),
    )  # fmt: skip
    return did


async def test_store_cashout_after_the_settlement_time(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    store = await drawer(conn, s, "CASH1", "store")
    who = await s.person("Sol", division="CASH1")
    day = s.today - timedelta(days=2)
    at = lambda d, h: datetime.combine(d, time(h), NY)  # noqa: E731
    await money(conn, who, None, "payment", "10", at=at(day, 9), drawer=store)
    await money(conn, who, None, "payment", "15", at=at(day, 14), drawer=store)
    await money(conn, who, None, "refund", "5", at=at(day, 14), drawer=store)
    await money(conn, who, None, "payment", "99", at=at(day, 13), drawer=store, valid=False)
    await money(conn, who, None, "payment", "20", at=at(day, 16), drawer=store)  # next day's batch
    params = {"divisions": ["CASH1"]}
    before = at(day, 15) - timedelta(minutes=1)
    early = await runner("finance.store_cashout", params, scheduled_for=before)
    assert "0 cashouts" in early.summary
    after = at(day, 15) + timedelta(minutes=20)
    ran = await runner(
        "finance.store_cashout", params, occurrence_id="occ-cash", scheduled_for=after
    )
    assert "1 cashouts, 3 payments cashed out" in ran.summary, ran.text
    again = await runner(
        "finance.store_cashout", params, occurrence_id="occ-cash", scheduled_for=after
    )
    assert "0 cashouts, 0 payments" in again.summary
    rows = await conn.fetch(
        "SELECT business_date, payments, total FROM sis.erp_cashouts WHERE drawer_id = $1 ORDER BY 1",
        store,
    )
    assert [tuple(r) for r in rows] == [(day, 3, D("20.00"))]
    late = await money(
        conn,
        who,
        None,
        "payment",
        "7",
        at=at(
            day,
            14,
        ),
        drawer=store,
    )
    nextday = await runner(
        "finance.store_cashout", params, scheduled_for=at(day + timedelta(days=1), 16)
    )
    assert "1 cashouts, 2 payments cashed out" in nextday.summary
    assert await conn.fetchval(
        "SELECT c.business_date FROM sis.erp_payments p JOIN sis.erp_cashouts c ON c.id = p.cashout_id WHERE p.id = $1",
        late,
    ) == day + timedelta(days=1)  # fmt: skip


async def test_portal_cashout_automatches_payments_to_invoices(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    portal = await drawer(conn, s, "PORT1", "portal")
    who = await s.person("Paz", division="PORT1")
    other = await s.person("Oz", division="PORT1")
    inv = await invoice(conn, who, "pos", [("25", True)], today=s.today)
    number = await conn.fetchval("SELECT invoice_number FROM sis.erp_invoices WHERE id = $1", inv)
    at = datetime.combine(s.today - timedelta(days=1), time(10), NY)
    good = await money(
        conn,
        who,
        None,
        "payment",
        "25",
        at=at,
        drawer=portal,
        method="portal",
        reference=f" {number.lower()} ",
    )
    wrong = await money(
        conn, other, None, "payment", "25", at=at, drawer=portal, method="portal", reference=number
    )
    params = {"divisions": ["PORT1"], "as_of": s.today.isoformat()}
    ran = await runner("finance.portal_cashout", params, occurrence_id="occ-portal")
    assert "1 cashouts, 1 payments cashed out, 1 automatched, 1 left unmatched" in ran.summary, (
        ran.text
    )
    again = await runner("finance.portal_cashout", params, occurrence_id="occ-portal")
    assert "0 cashouts, 0 payments cashed out, 0 automatched, 1 left unmatched" in again.summary
    got = {
        r["id"]: (r["invoice_id"], r["cashout_id"] is not None)
        for r in await conn.fetch(
            "SELECT * FROM sis.erp_payments WHERE id = ANY($1::bigint[])", [good, wrong]
        )
    }
    assert got == {good: (inv, True), wrong: (None, False)}
    assert (
        await conn.fetchval("SELECT automatched FROM sis.erp_cashouts WHERE drawer_id = $1", portal)
        == 1
    )


async def test_receipt_pdfs_one_file_per_receipt(
    runner: JobRunner, school: School, conn: asyncpg.Connection, tmp_batch_folder: Any
) -> None:
    s = school
    who = await s.person("Rae", division="RCPT1")
    inv = await invoice(conn, who, "pos", [("25", True)], today=s.today)
    noon = datetime.combine(s.today, time(12), NY)
    first = await money(conn, who, inv, "payment", "25.00", at=noon)
    second = await money(conn, who, None, "payment", "5.00", at=noon - timedelta(days=3))
    await money(conn, who, None, "payment", "9.00", at=noon, valid=False)
    params = {"divisions": ["RCPT1"], "as_of": s.today.isoformat(), "folder": "receipts/t"}
    dry = await runner("finance.receipt_pdfs", {**params, "dry_run": True})
    assert "1 PDFs written" in dry.summary and not (Path(tmp_batch_folder) / "receipts/t").exists()
    ran = await runner("finance.receipt_pdfs", params, occurrence_id="occ-pdf")
    assert "1 PDFs written, 0 already saved" in ran.summary, ran.text
    again = await runner("finance.receipt_pdfs", params, occurrence_id="occ-pdf")
    assert "0 PDFs written, 1 already saved" in again.summary
    saved = await conn.fetchval("SELECT receipt_file FROM sis.erp_payments WHERE id = $1", first)
    assert saved.startswith(f"receipts/t/{s.today.isoformat()}/receipt-")
    text = PdfReader(Path(tmp_batch_folder) / saved).pages[0].extract_text()
    assert "Rae Tester" in text and "25.00" in text
    past = await runner("finance.receipt_pdfs", {**params, "days_back": 3})
    assert "1 PDFs written, 1 already saved" in past.summary
    assert await conn.fetchval("SELECT receipt_file FROM sis.erp_payments WHERE id = $1", second)
    outside = registry.get("finance.receipt_pdfs")
    assert outside is not None
    refused = await runner("finance.receipt_pdfs", {**params, "folder": "../elsewhere"})
    assert refused.status == "failed" and "folder" in (refused.error or "")


async def test_pcard_reminder_once_per_requisition_and_status(
    runner: JobRunner, school: School, conn: asyncpg.Connection, mail_sink: Any
) -> None:
    s = school
    who = await s.person("Quinn", status="staff", division="PC1")
    rows = [
        ("TPC-1", "draft", 10),
        ("TPC-2", "pending_approval", 8),
        ("TPC-3", "draft", 2),
        ("TPC-4", "approved", 30),
    ]
    for number, status, age in rows:
        await conn.execute(
            """INSERT INTO sis.erp_pcard_requisitions (number, requester_id, vendor, amount, status, status_since)
               VALUES ($1, $2, 'Staples', 42.00, $3, $4)""",
            number, who["id"], status, s.days(-age),
        )  # fmt: skip
    admin = "pcard.admin@test.example"
    missing = await runner("finance.pcard_reminder", {"days": 7})
    assert missing.status == "failed" and "pcard_administrator" in (missing.error or "")
    mail_sink.clear()
    params = {"administrator": admin, "days": 7}
    dry = await runner("finance.pcard_reminder", {**params, "dry_run": True})
    assert "nothing sent" in dry.summary and mails_to(mail_sink, admin) == []
    ran = await runner("finance.pcard_reminder", params, occurrence_id="occ-pcard")
    assert "2 e-mail(s)" in ran.summary, ran.text
    mails = mails_to(mail_sink, admin)
    assert len(mails) == 2
    bodies = "\n".join(text_of(m) for m in mails)
    assert (
        "TPC-1" in bodies and "TPC-2" in bodies and "TPC-3" not in bodies and "TPC-4" not in bodies
    )
    assert any(m["Subject"] == "P-Card drafts waiting 7 days or more" for m in mails)
    mail_sink.clear()
    again = await runner("finance.pcard_reminder", params, occurrence_id="occ-pcard")
    assert "0 e-mail(s)" in again.summary and mail_sink.messages == []


async def test_student_financial_data_follows_name_and_address_changes(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s, t = school, school.today
    who = await s.person("Fay", division="FIN1")
    await invoice(conn, who, "ar", [("10", True)], today=t)
    await conn.execute(
        """INSERT INTO sis.addresses (person_id, kind, preferred, line1, city, region, postal_code)
           VALUES ($1, 'home', true, '1 Elm St', 'Springfield', 'IL', '62701')""",
        who["id"],
    )
    params = {"divisions": ["FIN1"]}
    ran = await runner("finance.student_financial_data", params, occurrence_id="occ-fin")
    assert "1 customers added, 0 customers updated, 0 unchanged" in ran.summary
    again = await runner("finance.student_financial_data", params, occurrence_id="occ-fin")
    assert "0 customers added, 0 customers updated, 1 unchanged" in again.summary
    await conn.execute("UPDATE sis.people SET last_name = 'Newname' WHERE id = $1", who["id"])
    await conn.execute(
        "UPDATE sis.addresses SET line1 = '9 Oak Ave' WHERE person_id = $1", who["id"]
    )
    changed = await runner("finance.student_financial_data", params)
    assert "0 customers added, 1 customers updated" in changed.summary
    row = await conn.fetchrow(
        "SELECT billing_name, line1, city FROM sis.erp_customers WHERE person_id = $1", who["id"]
    )
    assert tuple(row) == ("Fay Newname", "9 Oak Ave", "Springfield")


async def test_every_finance_job_over_the_demo_school_changes_nothing_twice(
    runner: JobRunner, conn: asyncpg.Connection, sis_today: date
) -> None:
    """The demo's receivables: each job finds work there, and its re-run finds none left."""
    noon = datetime.combine(sis_today, time(23, 59), NY)
    for name, param, first, second in [
        (
            "finance.pos_invoice_table_update",
            {},
            "allocations updated",
            "0 invoices updated, 0 allocations updated",
        ),
        ("finance.delete_stale_pos_invoices", {}, "flagged deleted", "0 flagged deleted"),
        ("finance.void_overdue_ar_invoices", {"min_age_days": 60}, "voided", "0 voided"),
        ("finance.payment_plan_invoices", {}, "plans processed", "0 plans processed"),
        (
            "finance.portal_cashout",
            {},
            "automatched",
            "0 cashouts, 0 payments cashed out, 0 automatched",
        ),
        ("finance.store_cashout", {}, "payments cashed out", "0 cashouts, 0 payments cashed out"),
        (
            "finance.student_financial_data",
            {},
            "customers added",
            "0 customers added, 0 customers updated",
        ),
        ("finance.receipt_pdfs", {"days_back": 2}, "PDFs written", "0 PDFs written"),
        (
            "finance.district_template_fees",
            {},
            "template fees assigned",
            "0 template fees assigned",
        ),
        ("hr.benefits_rates_update", {}, "rates changed", "0 rates changed"),
        ("hr.retiree_benefits_rates_update", {}, "rates changed", "0 rates changed"),
        ("messaging.field_trip_notifications", {}, "alerts", "0 alerts, 0 e-mails"),
    ]:
        if name.startswith("finance."):  # the district's HR and transportation jobs take no schools
            param = {"divisions": ["UG", "GR", "CE"], **param}
        ran = await runner(
            name,
            param,
            occurrence_id=f"demo-{name}",
            scheduled_for=noon,
        )
        assert ran.status == "succeeded", (name, ran.error)
        assert re.search(rf"\b[1-9][0-9]* {re.escape(first)}", ran.summary), (name, ran.summary)
        again = await runner(
            name,
            param,
            occurrence_id=f"demo-{name}",
            scheduled_for=noon,
        )
        assert second in again.summary, (name, again.summary)


async def test_district_template_fees_reach_programs_built_after_the_push(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    division = await school.division("FPS1")
    template = await conn.fetchval(
        """INSERT INTO sis.erp_fee_templates (code, name, item_code, gl_account, amount, pushed_at)
           VALUES ('T_TECH', 'Technology fee', 'TECH', '4450-000', 30.00, now() - interval '5 days')
           RETURNING id"""
    )
    unpushed = await conn.fetchval(
        """INSERT INTO sis.erp_fee_templates (code, name, item_code, gl_account, amount)
           VALUES ('T_DRAFT', 'Draft fee', 'DRAFT', '4451-000', 10.00) RETURNING id"""
    )
    programs = (
        "INSERT INTO sis.erp_programs (code, name, division_id) VALUES ($1, $1, $2) RETURNING id"
    )
    old = await conn.fetchval(programs, "FPS1-OLD", division)
    new = await conn.fetchval(programs, "FPS1-NEW", division)
    await conn.execute(
        "INSERT INTO sis.erp_program_fees (program_id, template_id, amount) VALUES ($1, $2, 25.00)",
        old, template,
    )  # fmt: skip
    params = {"divisions": ["FPS1"]}
    ran = await runner("finance.district_template_fees", params, occurrence_id="occ-fees")
    pushed = await conn.fetchval(
        "SELECT count(*) FROM sis.erp_fee_templates WHERE pushed_at IS NOT NULL"
    )
    assert pushed == 3  # the demo district's two and the test's
    # every pushed template to both programs, but the one the old program already carries
    assert f"{2 * pushed - 1} template fees assigned, 2 programs" in ran.summary, ran.text
    again = await runner("finance.district_template_fees", params, occurrence_id="occ-fees")
    assert "0 template fees assigned" in again.summary
    fees = await conn.fetch(
        "SELECT program_id, template_id, amount, assigned_by FROM sis.erp_program_fees "
        "WHERE program_id = ANY($1::bigint[]) AND template_id = ANY($2::bigint[]) ORDER BY program_id",
        [old, new],
        [template, unpushed],
    )
    assert [tuple(r) for r in fees] == [
        (old, template, D("25.00"), "push"), (new, template, D("30.00"), "scheduled job"),
    ]  # fmt: skip
    assert unpushed not in [r["template_id"] for r in fees]


async def test_benefit_rates_follow_age_and_zip_code(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: date
) -> None:
    s = school
    await conn.execute("INSERT INTO sis.erp_benefit_plans (code, name) VALUES ('T_VIS', 'Vision')")
    await conn.executemany(
        "INSERT INTO sis.erp_benefit_rates (plan_code, min_age, max_age, zip_prefix, monthly_rate) "
        "VALUES ('T_VIS', $1, $2, $3, $4)",
        [(0, 64, "", D("10")), (65, 150, "", D("20")), (65, 150, "606", D("22"))],
    )
    turning = date(sis_today.year - 65, sis_today.month, sis_today.day) + timedelta(days=1)
    ret = await s.person("Rhea", status="staff", division="BEN1", born=turning)
    emp = await s.person("Eli", status="staff", division="BEN1", born=date(1990, 5, 1))
    await conn.execute(
        """INSERT INTO sis.addresses (person_id, kind, preferred, line1, city, postal_code)
           VALUES ($1, 'home', true, '1 Main', 'Peoria', '61602')""",
        ret["id"],
    )
    await conn.executemany(
        "INSERT INTO sis.erp_benefit_enrollments (person_id, plan_code, retiree) VALUES ($1, 'T_VIS', $2)",
        [(ret["id"], True), (emp["id"], False)],
    )
    params = {"plans": ["T_VIS"], "as_of": sis_today.isoformat()}
    changes = (
        "SELECT new_rate, reason FROM sis.erp_benefit_rate_changes WHERE person_id = $1 ORDER BY id"
    )
    rate = "SELECT monthly_rate FROM sis.erp_benefit_enrollments WHERE person_id = $1"
    ran = await runner("hr.retiree_benefits_rates_update", params, occurrence_id="occ-ret")
    assert "1 rates changed" in ran.summary and await conn.fetchval(rate, ret["id"]) == D("10.00")
    assert await conn.fetchval(rate, emp["id"]) is None, "the employees' job rates the employees"
    again = await runner("hr.retiree_benefits_rates_update", params, occurrence_id="occ-ret")
    assert "0 rates changed" in again.summary and "1 unchanged" in again.summary
    birthday = await runner(
        "hr.retiree_benefits_rates_update",
        {**params, "as_of": (sis_today + timedelta(days=1)).isoformat()},
    )
    assert "1 rates changed, 1 ages progressed" in birthday.summary, birthday.text
    await conn.execute(
        "UPDATE sis.addresses SET postal_code = '60614' WHERE person_id = $1", ret["id"]
    )
    moved = await runner(
        "hr.retiree_benefits_rates_update",
        {**params, "as_of": (sis_today + timedelta(days=2)).isoformat()},
    )
    assert "1 rates changed, 0 ages progressed, 1 ZIP codes changed" in moved.summary, moved.text
    assert [tuple(r) for r in await conn.fetch(changes, ret["id"])] == [
        (D("10.00"), "age and ZIP code"), (D("20.00"), "age"), (D("22.00"), "ZIP code"),
    ]  # fmt: skip
    employees = await runner("hr.benefits_rates_update", params)
    assert "1 rates changed" in employees.summary and await conn.fetchval(rate, emp["id"]) == D(
        "10.00"
    )


async def test_employee_agreements_use_the_published_date(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: date
) -> None:
    s = school
    await conn.execute(
        """INSERT INTO sis.erp_agreements (code, title, published_on, deadline_on, departments)
           VALUES ('T_AGR', 'Teachers 2026', $1, $2, '{Science}')""",
        s.days(-10), s.days(20),
    )  # fmt: skip
    hired = {}
    for name, hire, dept in (("Ada", -100, "Science"), ("Bo", -5, "Science"), ("Cy", -100, "Arts")):
        p = await s.person(name, status="faculty", division="AGR1")
        await conn.execute(
            "INSERT INTO sis.employees (person_id, hire_date, department) VALUES ($1, $2, $3)",
            p["id"], s.days(hire), dept,
        )  # fmt: skip
        hired[name] = p["id"]
    unknown = await runner("hr.update_employee_agreements", {"agreement": "NOPE"})
    assert unknown.status == "failed" and "T_AGR" in (unknown.error or "") + unknown.text
    params = {"agreement": "t_agr"}
    dry = await runner("hr.update_employee_agreements", {**params, "dry_run": True})
    assert "1 employees assigned" in dry.summary
    ran = await runner("hr.update_employee_agreements", params, occurrence_id="occ-agr")
    assert "1 employees assigned, 0 already assigned" in ran.summary
    again = await runner("hr.update_employee_agreements", params, occurrence_id="occ-agr")
    assert "0 employees assigned, 1 already assigned" in again.summary
    got = await conn.fetch(
        "SELECT a.person_id FROM sis.erp_agreement_assignments a JOIN sis.erp_agreements g "
        "ON g.id = a.agreement_id WHERE g.code = 'T_AGR'"
    )
    assert [r[0] for r in got] == [hired["Ada"]]


async def test_field_trip_notifications_deliver_alerts_and_emails_once(
    runner: JobRunner, school: School, conn: asyncpg.Connection, mail_sink: Any
) -> None:
    s = school
    # The demo's waiting notices go first, in a run of their own; what it cannot mail stays.
    drained = await runner("messaging.field_trip_notifications", {})
    left = int(re.findall(r"(\d+) without e-mail address", drained.summary)[0])
    req = await s.person("Tia", status="faculty", division="FT1")
    mute = await s.person("Mo", status="faculty", division="FT1", email=False)
    trip = await conn.fetchval(
        """INSERT INTO sis.erp_field_trips (number, requester_id, destination, departs_at, status)
           VALUES ('T-FT-1', $1, 'Aquarium', now() + interval '7 days', 'approved') RETURNING id""",
        req["id"],
    )
    notices = "INSERT INTO sis.erp_transportation_notices (field_trip_id, person_id, channel, subject, body) VALUES ($1, $2, $3, $4, $5) RETURNING id"
    await conn.fetchval(
        notices, trip, req["id"], "both", "Trip T-FT-1 approved", "Approved: bus 12."
    )
    await conn.fetchval(notices, trip, req["id"], "alert", "Trip T-FT-1 driver", "Driver: Sam.")
    nomail = await conn.fetchval(
        notices, trip, mute["id"], "both", "Trip T-FT-1 chaperone", "You chaperone."
    )
    mail_sink.clear()
    dry = await runner("messaging.field_trip_notifications", {"dry_run": True})
    assert f"3 alerts, 1 e-mails, {left + 1} without e-mail address" in dry.summary, dry.text
    ran = await runner("messaging.field_trip_notifications", {}, occurrence_id="occ-ft")
    assert f"3 alerts, 1 e-mails, {left + 1} without e-mail address" in ran.summary, ran.text
    [mail] = mails_to(mail_sink, req["email"])
    assert mail["Subject"] == "Trip T-FT-1 approved" and "bus 12" in text_of(mail)
    assert len(mail_sink.messages) == 1
    reminders = await conn.fetch(
        "SELECT person_id, title FROM sis.reminders WHERE source LIKE 'field_trip:%' AND person_id = ANY($1::bigint[]) ORDER BY id",
        [req["id"], mute["id"]],
    )
    assert [tuple(r) for r in reminders] == [
        (req["id"], "Trip T-FT-1 approved"), (req["id"], "Trip T-FT-1 driver"), (mute["id"], "Trip T-FT-1 chaperone"),
    ]  # fmt: skip
    mail_sink.clear()
    again = await runner("messaging.field_trip_notifications", {}, occurrence_id="occ-ft")
    assert (
        f"0 alerts, 0 e-mails, {left + 1} without e-mail address" in again.summary
        and mail_sink.messages == []
    )
    problem = await conn.fetchval(
        "SELECT problem FROM sis.erp_transportation_notices WHERE id = $1", nomail
    )
    assert problem == "no primary e-mail address"
