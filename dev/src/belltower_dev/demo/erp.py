"""The ERP's receivables (migration 0061): each school's cash drawers, the Automatic Invoices
module's rules, a few hundred AR and POS invoices with their allocations and payments (unpaid,
partly paid, paid, paid and refunded, deferred, stale POS invoices with no active line), the
last days' portal payments waiting for their cashout, payment plans waiting to be invoiced and
P-Card requisitions. Drawn from a Random of its own (seeded from the demo's seed), after every
other part, so the rest of the demo keeps its rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from .model import DemoData, Row

ITEMS = [
    ("LUNCH", "Lunch account", "4110-000"), ("TRIP", "Field trip", "4120-000"),
    ("BOOK", "Lost book", "4130-000"), ("ATHL", "Athletics fee", "4140-000"),
    ("YEARBK", "Yearbook", "4150-000"),
]  # fmt: skip
VENDORS = ["Office Depot", "Amazon Business", "Home Depot", "Staples", "School Specialty"]


def add_erp_finance(data: DemoData) -> None:
    rng = random.Random(data.seed * 61 + 1)
    today = data.today
    midnight = datetime.combine(today, time(0), UTC)
    columns, rows = data.tables["people"]
    status, division = columns.index("status"), columns.index("division_id")
    students = [(r[0], r[division]) for r in rows if r[status] == "student"]
    staff = [r[0] for r in rows if r[status] == "staff"]
    division_ids = sorted({d for _, d in students})
    codes = {i: c for i, c, _ in data.tables["divisions"][1]}

    drawers: list[Row] = []
    drawer_of: dict[tuple[int, str], int] = {}
    for d in division_ids:
        for kind, portal, settles in (
            ("store", True, time(15)),
            ("portal", True, time(16)),
            ("office", False, time(15)),
        ):
            drawer_id = len(drawers) + 1
            drawer_of[(d, kind)] = drawer_id
            drawers.append(
                (
                    drawer_id,
                    f"{kind.upper()}-{codes[d]}",
                    f"{codes[d]} {kind} drawer",
                    kind,
                    d,
                    portal,
                    settles,
                )
            )
    data.add(
        "erp_cash_drawers",
        ["id", "code", "name", "kind", "division_id", "portal_enabled", "settlement_time"],
        drawers,
    )
    data.add(
        "erp_automatic_invoices",
        ["id", "code", "description", "interval", "divisions", "levels", "item_code", "gl_account",
         "amount", "due_days", "starts_on"],
        [
            (1, "ACTFEE", "Student activity fee", "annual", [], [], "ACT", "4200-000", Decimal("75.00"), 30, today - timedelta(days=200)),
            (2, "LABFEE", "Science lab fee", "term", ["UG"], ["BACH"], "LAB", "4210-000", Decimal("40.00"), 21, today - timedelta(days=200)),
            (3, "PARKING", "Parking permit", "monthly", ["GR"], [], "PARK", "4220-000", Decimal("25.00"), 10, today - timedelta(days=60)),
        ],
    )  # fmt: skip

    store_drawers = {v for (_, kind), v in drawer_of.items() if kind == "store"}
    invoices: list[Row] = []
    lines: list[Row] = []
    payments: list[Row] = []

    def pay(person: int, invoice: int | None, kind: str, amount: Decimal, method: str, days_ago: float,
            drawer: int | None, reference: str = "", valid: bool = True) -> None:  # fmt: skip
        n = len(payments) + 1
        at = midnight - timedelta(seconds=round(days_ago * 86400))
        payments.append((invoice, person, kind, amount, method, reference, valid, at, drawer,
                         f"R{today:%y}{n:06d}", drawer in store_drawers))  # fmt: skip

    billed = rng.sample(students, min(400, len(students)))
    for person, d in billed:
        module = rng.choice(["ar", "pos", "pos"])
        age = rng.randint(1, 240)
        invoice_id = len(invoices) + 1
        number = f"{module.upper()}-{invoice_id:06d}"
        item = rng.choice(ITEMS)
        amounts = [Decimal(rng.randint(2, 40) * 5) for _ in range(rng.randint(1, 2))]
        active = [not (module == "pos" and rng.random() < 0.1) for _ in amounts]
        for k, (amount, on) in enumerate(zip(amounts, active, strict=True), 1):
            lines.append((invoice_id, k, item[0], item[1], item[2], amount, on))
        total = sum((a for a, on in zip(amounts, active, strict=True) if on), Decimal(0))
        outcome = rng.random()
        paid = Decimal(0)
        where = drawer_of[(d, "office")]
        if total and outcome < 0.35:
            paid = total
            pay(
                person,
                invoice_id,
                "payment",
                total,
                rng.choice(["cash", "check", "card"]),
                age * 0.5,
                where,
            )
        elif total and outcome < 0.55:
            paid = (total / 2).quantize(Decimal("0.01"))
            pay(person, invoice_id, "payment", paid, "card", age * 0.5, where)
        elif total and outcome < 0.62:
            pay(person, invoice_id, "payment", total, "card", age * 0.6, where)
            pay(person, invoice_id, "refund", total, "card", age * 0.3, where)
        elif total and outcome < 0.68:
            pay(person, invoice_id, "deferral", total, "deferral", age * 0.5, None)
        elif total and outcome < 0.72:
            pay(person, invoice_id, "payment", total, "check", age * 0.5, where, valid=False)
        invoices.append((invoice_id, number, module, person, today - timedelta(days=age),
                         today - timedelta(days=age - 30), f"{item[1]}", total, paid, total - paid))  # fmt: skip
    # The last two days' online payments: in the portal drawers, quoting the invoice they pay
    # (a few mistyped), not yet matched nor cashed out; and the Store's own card sales.
    open_pos = [
        (inv[0], inv[1], inv[3], inv[9]) for inv in invoices if inv[2] == "pos" and inv[9] > 0
    ]
    division_of = dict(students)
    for _invoice, number, person, balance in rng.sample(open_pos, min(40, len(open_pos))):
        d = division_of[person]
        reference = number if rng.random() < 0.85 else f"{number}X"
        pay(
            person,
            None,
            "payment",
            balance,
            "portal",
            rng.uniform(0.05, 2.0),
            drawer_of[(d, "portal")],
            reference,
        )
    for person, d in rng.sample(students, 30):
        pay(
            person,
            None,
            "payment",
            Decimal(rng.randint(1, 12) * 5),
            "card",
            rng.uniform(0.05, 2.0),
            drawer_of[(d, "store")],
        )
    data.add(
        "erp_invoices",
        ["id", "invoice_number", "module", "person_id", "invoice_date", "due_date", "description",
         "total", "amount_paid", "balance"],
        invoices,
    )  # fmt: skip
    data.add(
        "erp_invoice_allocations",
        ["invoice_id", "line_number", "item_code", "description", "gl_account", "amount", "active"],
        lines,
    )
    data.add(
        "erp_payments",
        ["invoice_id", "person_id", "kind", "amount", "method", "reference", "valid",
         "received_at", "drawer_id", "receipt_number", "store_receipt"],
        payments,
    )  # fmt: skip
    data.add(
        "erp_payment_plans",
        ["person_id", "description", "item_code", "gl_account", "total", "installments",
         "frequency", "first_due_on"],
        [
            (person, "Tuition payment plan", "PLAN", "4300-000", Decimal(rng.randint(20, 120) * 25),
             rng.choice([3, 4, 6, 10]), rng.choice(["weekly", "biweekly", "monthly"]),
             today + timedelta(days=rng.randint(1, 30)))
            for person, _ in rng.sample(students, 20)
        ],
    )  # fmt: skip
    data.add(
        "erp_pcard_requisitions",
        ["number", "requester_id", "vendor", "description", "amount", "status", "status_since"],
        [
            (f"PC-{n:05d}", rng.choice(staff), rng.choice(VENDORS), "Classroom supplies",
             Decimal(rng.randint(20, 900)), rng.choice(["draft", "pending_approval", "approved", "ordered"]),
             today - timedelta(days=rng.randint(0, 30)))
            for n in range(1, 25)
        ],
    )  # fmt: skip
    _fees_and_benefits(data, rng, staff, codes)
    _field_trips(data, rng, staff)


def _fees_and_benefits(
    data: DemoData, rng: random.Random, staff: list[int], codes: dict[int, str]
) -> None:
    """Programs (some built after the district pushed its fee templates), the templates, benefit
    plans rated by age band and ZIP area with the staff's (and a few retirees') enrollments, not
    yet rated, and one employment agreement."""
    today = data.today
    pushed = datetime.combine(today - timedelta(days=90), time(12), UTC)
    programs: list[Row] = []
    for d, code in sorted(codes.items()):
        for k, name in enumerate(["Welding", "Practical Nursing", "Cosmetology"], 1):
            built = pushed + timedelta(days=rng.choice([-30, -10, 20, 60]))
            programs.append((len(programs) + 1, f"{code}-P{k}", f"{name} ({code})", d, built))
    data.add("erp_programs", ["id", "code", "name", "division_id", "created_at"], programs)
    templates = [(1, "REG", "Registration fee", "REG", "4400-000", Decimal("50.00"), pushed),
                 (2, "LABKIT", "Lab kit", "KIT", "4410-000", Decimal("120.00"), pushed)]  # fmt: skip
    data.add(
        "erp_fee_templates",
        ["id", "code", "name", "item_code", "gl_account", "amount", "pushed_at"],
        templates,
    )
    data.add(
        "erp_program_fees",
        ["program_id", "template_id", "amount", "assigned_by", "assigned_at"],
        [(p[0], t[0], t[5], "push", pushed) for p in programs if p[4] <= pushed for t in templates],
    )
    data.add("erp_benefit_plans", ["code", "name"], [("MED", "Medical"), ("DEN", "Dental")])
    rates: list[Row] = []
    for plan, base in (("MED", 420), ("DEN", 38)):
        for low, high, step in ((0, 29, 0), (30, 49, 1), (50, 64, 2), (65, 150, 3)):
            rates.append((plan, low, high, "", Decimal(base + base * step // 4)))
            rates.append((plan, low, high, "1", Decimal(base + base * step // 4 + 25)))
    data.add(
        "erp_benefit_rates",
        ["plan_code", "min_age", "max_age", "zip_prefix", "monthly_rate"],
        rates,
    )
    data.add(
        "erp_benefit_enrollments",
        ["person_id", "plan_code", "retiree"],
        [
            (person, plan, i % 10 == 0)
            for i, person in enumerate(staff)
            for plan in ("MED", "DEN")
            if rng.random() < 0.7
        ],
    )
    data.add(
        "erp_agreements",
        ["code", "title", "published_on", "deadline_on"],
        [
            (
                "AGR-STAFF",
                "Support staff agreement",
                today - timedelta(days=20),
                today + timedelta(days=10),
            )
        ],
    )


def _field_trips(data: DemoData, rng: random.Random, staff: list[int]) -> None:
    """Field trips around today and the notifications their workflow left for the requesters,
    half of them waiting to be delivered."""
    midnight = datetime.combine(data.today, time(0), UTC)
    trips: list[Row] = []
    notices: list[Row] = []
    for n in range(1, 9):
        requester = rng.choice(staff)
        departs = midnight + timedelta(days=rng.randint(-5, 30), hours=8)
        status = rng.choice(["requested", "approved", "scheduled", "denied"])
        trips.append(
            (
                n,
                f"FT-{n:04d}",
                requester,
                rng.choice(["Science Museum", "State Capitol", "Zoo"]),
                departs,
                status,
            )
        )
        for k in range(rng.randint(1, 2)):
            sent = midnight - timedelta(days=k + 1) if rng.random() < 0.5 else None
            notices.append(
                (
                    n,
                    requester,
                    rng.choice(["alert", "email", "both"]),
                    f"Field trip FT-{n:04d}: {status}",
                    f"Your field trip FT-{n:04d} is {status}.",
                    midnight - timedelta(hours=k + 2),
                    sent,
                    sent,
                )
            )
    data.add(
        "erp_field_trips",
        ["id", "number", "requester_id", "destination", "departs_at", "status"],
        trips,
    )
    data.add(
        "erp_transportation_notices",
        [
            "field_trip_id",
            "person_id",
            "channel",
            "subject",
            "body",
            "created_at",
            "alerted_at",
            "emailed_at",
        ],
        notices,
    )
