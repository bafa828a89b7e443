"""Student records beside enrollment: holds, immunizations and transfer credit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from .codes import COURSE_TOPICS, DEPARTMENTS, HOLD_TYPES, IMMUNIZATIONS, TRANSFER_SCHOOLS
from .model import Draw, Row


def add_holds(draw: Draw, students: list[int]) -> None:
    """One student in twelve has a hold placed in the last two months."""
    rng, today = draw.rng, draw.today
    draw.data.add("hold_types", ["code", "name", "blocks_registration", "user_defined"], HOLD_TYPES)
    reasons = {h[0]: h[1] for h in HOLD_TYPES}
    holds: list[Row] = []
    for student in rng.sample(students, len(students) // 12):
        code = rng.choices([h[0] for h in HOLD_TYPES], [30, 25, 15, 15, 15])[0]
        starts = today - timedelta(days=rng.randint(0, 60))
        holds.append((student, code, reasons[code], starts, None, draw.at((today - starts).days)))
    draw.data.add(
        "holds", ["person_id", "hold_type", "reason", "starts_on", "ends_on", "added_at"], holds
    )


def add_immunizations(draw: Draw, students: list[int]) -> None:
    """Two to four immunizations per student, some expiring."""
    rng, today = draw.rng, draw.today
    immunizations: list[Row] = []
    for student in students:
        for kind, valid_days in rng.sample(IMMUNIZATIONS, rng.randint(2, 4)):
            given = today - timedelta(days=rng.randint(30, 4000))
            expires = given + timedelta(days=valid_days) if valid_days else None
            immunizations.append((student, kind, given, expires))
    draw.data.add(
        "immunizations", ["person_id", "kind", "administered_on", "expires_on"], immunizations
    )


def add_transfer_credits(draw: Draw, students: list[int]) -> None:
    """One student in ten brought credit from another school, accepted in the last 90 days."""
    rng, today = draw.rng, draw.today
    transfers: list[Row] = []
    for student in rng.sample(students, len(students) // 10):
        for _ in range(rng.randint(1, 3)):
            dept = rng.choice(DEPARTMENTS)
            accepted = today - timedelta(days=rng.randint(0, 90))
            transfers.append(
                (student, rng.choice(TRANSFER_SCHOOLS), f"{dept[0]}{rng.randint(100, 299)}",
                 f"{dept[1]} {rng.choice(COURSE_TOPICS)}", Decimal(rng.choice([3, 3, 4])),
                 rng.choice(["A", "A-", "B+", "B", "B-", "C", "P"]), accepted,
                 draw.at((today - accepted).days - 0.5))
            )  # fmt: skip
    draw.data.add(
        "transfer_credits",
        ["person_id", "institution", "course_code", "course_title", "credits", "grade",
         "accepted_on", "added_at"],
        transfers,
    )  # fmt: skip
