"""The current term's bill per student: tuition, fees, housing, aid and payments."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from .codes import CREDIT_PER_HOUR, TRANSACTION_CODES
from .enrollments import Registration
from .model import Draw, Row


def add_transactions(draw: Draw, terms: list[Row], reg: Registration, students: list[int]) -> None:
    """Most students paid in full, some owe part, a few paid too much (credit balances)."""
    rng = draw.rng
    draw.data.add(
        "transaction_codes",
        ["code", "name", "kind", "post_award", "is_loan"],
        [(*code, code[0] == "LOAN") for code in TRANSACTION_CODES],
    )
    transactions: list[Row] = []
    billed_on = terms[1][3] - timedelta(days=20)
    for student in students:
        load = reg.term_credits[(student, 2)]
        if not load:
            continue
        tuition = load * CREDIT_PER_HOUR
        charges = tuition + Decimal("250.00") + (Decimal("2400.00") if rng.random() < 0.3 else 0)
        transactions.append((student, 2, "TUIT", tuition, billed_on, "Tuition"))
        transactions.append((student, 2, "FEES", Decimal("250.00"), billed_on, "Student fees"))
        if charges > tuition + 250:
            transactions.append((student, 2, "HOUS", Decimal("2400.00"), billed_on, "Housing"))
        transactions.extend(_payments(draw, student, charges))
    draw.data.add(
        "transactions",
        ["person_id", "term_id", "code", "amount", "posted_on", "description"],
        transactions,
    )


def _payments(draw: Draw, student: int, charges: Decimal) -> list[Row]:
    rng, today = draw.rng, draw.today
    outcome = rng.random()
    paid = (
        charges
        if outcome < 0.55
        else charges * Decimal(rng.uniform(0.2, 0.9))
        if outcome < 0.92
        else charges + Decimal(rng.randint(100, 1500))
    )
    paid = paid.quantize(Decimal("0.01"))
    aid = (paid * Decimal("0.5")).quantize(Decimal("0.01")) if rng.random() < 0.4 else Decimal(0)
    rows: list[Row] = []
    if aid:
        code = rng.choice(["PELL", "LOAN"])
        posted = today - timedelta(days=rng.randint(1, 40))
        rows.append((student, 2, code, -aid, posted, "Aid disbursement"))
    posted = today - timedelta(days=rng.randint(1, 40))
    rows.append((student, 2, "PAY", -(paid - aid), posted, "Payment"))
    return rows
