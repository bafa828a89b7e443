"""The demo school is the same rows, ids included, for the same seed and day.

Tests and ``make dev`` rely on what the demo holds (3230 people, a student's balance, the
minors), so splitting or tidying the generator must not change one value. The digests pin the
exact rows; change them only together with a deliberate change of the demo (or of Faker, whose
names it draws), and say so in the commit.
"""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from belltower_dev import demo

DEFAULT_COUNTS = {
    "divisions": 3, "campuses": 3, "levels": 4, "departments": 12, "people": 3230,
    "person_external_ids": 3160, "person_statuses": 3230, "person_indicators": 88,
    "addresses": 3230, "emails": 4838, "phones": 4154, "terms": 3, "courses": 120, "sections": 545,
    "section_meetings": 20213, "enrollments": 15132, "schedule_changes": 379, "grades": 5949,
    "waitlist": 1920, "attendance": 54288, "hold_types": 5, "holds": 208, "transaction_codes": 8,
    "transactions": 6018, "immunizations": 7547, "transfer_credits": 493, "notification_groups": 6,
    "notification_group_members": 18, "registration_appointments": 1954, "email_activities": 2,
    "guardians": 148, "student_guardians": 148, "activity_types": 5, "activities": 275,
    "application_checklist_items": 491, "forms": 3, "form_submissions": 50,
    "login_credentials": 3549, "employment_records": 100, "isirs": 845, "page_visits": 480,
    "prospect_requests": 8, "graduation_requirements": 7, "mailing_list_members": 783,
    "combined_gradebooks": 17, "combined_gradebook_sections": 21, "school_years": 3,
    "billing_accounts": 1500, "payment_plans": 250, "refunds": 12, "aid_awards": 125,
    "aid_disbursements": 80, "erp_cash_drawers": 9, "erp_automatic_invoices": 3,
    "erp_invoices": 400, "erp_invoice_allocations": 615, "erp_payments": 394,
    "erp_payment_plans": 20, "erp_pcard_requisitions": 24, "erp_programs": 9,
    "erp_fee_templates": 2, "erp_program_fees": 6, "erp_benefit_plans": 2, "erp_benefit_rates": 16,
    "erp_benefit_enrollments": 77, "erp_agreements": 1, "erp_field_trips": 8,
    "erp_transportation_notices": 14,
}  # fmt: skip
SMALL = demo.DemoSize(students=300, faculty=20, staff=12, prospects=30, alumni=30)


def digest(data: demo.DemoData) -> str:
    """SHA-256 of every table's name, columns and rows, in load order."""
    h = hashlib.sha256()
    for table, (columns, rows) in data.tables.items():
        h.update(repr((table, columns)).encode())
        for row in rows:
            h.update(repr(row).encode())
    return h.hexdigest()


def test_the_default_demo_school_keeps_its_tables_rows_and_values() -> None:
    data = demo.generate(date(2026, 3, 2))
    assert {table: len(rows) for table, (_, rows) in data.tables.items()} == DEFAULT_COUNTS
    assert list(data.tables) == list(DEFAULT_COUNTS), "load order changed"
    assert digest(data) == "f8bde5993cb8847187b10b116ac75ad7be2cddc58f60f839fbfafff5cc865223"


@pytest.mark.parametrize(
    ("today", "seed", "expected"),
    [
        (date(2024, 2, 29), 7, "cf4db12388be78e7c130f1d7bbd4cabac63bdbce3c05724f3cd2aa80a140099f"),
        (date(2026, 12, 31), 1, "1a169c7e84c40d6fff810f7e3cbd146f8229bfe3eb6fe9597305b3e80449db71"),
    ],
)
def test_a_small_demo_school_keeps_its_rows_for_another_day_and_seed(
    today: date, seed: int, expected: str
) -> None:
    assert digest(demo.generate(today, seed=seed, size=SMALL)) == expected
