"""The bursar's and the aid office's records (migration 0060): billing accounts, Nelnet payment
plans, refunds sent to Nelnet and waiting for its answer, and aid awards from JFA and Regent."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from .model import Draw, Row

CURRENT_TERM = 2


def _award_year(draw: Draw) -> str:
    start = draw.today.year if draw.today.month >= 7 else draw.today.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def add_billing_records(draw: Draw, students: list[int]) -> None:
    """Three in five students have a billing account (half of them paperless, a third with a
    Nelnet customer id), one in ten a payment plan (a few enrolled in the last day), a dozen
    refunds exported to Nelnet await its response, and one in twenty students has an aid award
    from JFA (half still waiting to be processed) or a Regent award with its disbursement."""
    rng = draw.rng
    accounts: list[Row] = []
    for n, person in enumerate(sorted(rng.sample(students, len(students) * 3 // 5)), 1):
        nelnet = f"N{7000000 + n}" if rng.random() < 0.33 else None
        accounts.append((person, rng.random() < 0.5, None, nelnet, draw.at(rng.uniform(30, 400))))
    draw.data.add(
        "billing_accounts",
        ["person_id", "paperless", "statement_email", "nelnet_customer_id", "created_at"],
        accounts,
    )
    plans: list[Row] = []
    for n, person in enumerate(rng.sample(students, len(students) // 10), 1):
        days = rng.uniform(0, 1.5) if n <= 6 else rng.uniform(2, 60)
        added = draw.at(days)
        installments = rng.choice([4, 5])
        budget = Decimal(rng.randint(8, 60) * 100)
        plans.append((person, CURRENT_TERM, "nelnet", f"AGR{n:06d}", f"PLAN{installments}", "active",
                      budget, installments, added.date(), added, added))  # fmt: skip
    draw.data.add(
        "payment_plans",
        ["person_id", "term_id", "provider", "external_ref", "plan_code", "status", "budget",
         "installments", "enrolled_on", "added_at", "changed_at"],
        plans,
    )  # fmt: skip
    refunds: list[Row] = []
    for person in rng.sample(students, 12):
        exported = datetime.combine(draw.today - timedelta(days=rng.randint(1, 5)), time(2, 0), UTC)
        amount = Decimal(rng.randint(100, 900)).quantize(Decimal("0.01"))
        refunds.append((person, amount, "ach", "exported", exported, exported))
    draw.data.add(
        "refunds",
        ["person_id", "amount", "method", "status", "exported_at", "created_at"],
        refunds,
    )
    _awards(draw, students)


def _awards(draw: Draw, students: list[int]) -> None:
    rng, year = draw.rng, _award_year(draw)
    awards: list[Row] = []
    disbursements: list[Row] = []
    for n, person in enumerate(rng.sample(students, len(students) // 20), 1):
        source = "jfa" if n % 3 else "regent"
        fund = rng.choice(["PELL", "LOAN", "SCH"])
        offered = Decimal(rng.randint(10, 40) * 100)
        added = draw.at(rng.uniform(1, 45))
        waiting = source == "jfa" and rng.random() < 0.5
        status = "offered" if waiting and rng.random() < 0.5 else "accepted"
        accepted = offered if status == "accepted" else Decimal(0)
        awards.append((n, person, year, CURRENT_TERM, fund, source, f"{source.upper()}{n:06d}",
                       offered, accepted, status, None if waiting else added, added, added))  # fmt: skip
        if not waiting:
            disbursements.append((n, 1, accepted / 2, added.date(), added))
    draw.data.add(
        "aid_awards",
        ["id", "person_id", "award_year", "term_id", "fund_code", "source", "external_ref",
         "offered", "accepted", "status", "processed_at", "added_at", "changed_at"],
        awards,
    )  # fmt: skip
    draw.data.add(
        "aid_disbursements",
        ["award_id", "sequence", "amount", "disbursed_on", "added_at"],
        disbursements,
    )
