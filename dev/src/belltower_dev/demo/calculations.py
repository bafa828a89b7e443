"""What the calculation jobs need of the demo school beyond its records: course weights for the
weighted GPA and each level's graduation requirements. Derived from rows already drawn, with no
draw of their own, so every other table keeps its rows."""

from __future__ import annotations

from decimal import Decimal

from .model import DemoData, Row

HONORS = Decimal("0.50")
ADVANCED = Decimal("1.00")
# (level id, code, name, department id or None for a total, credits required)
REQUIREMENTS: list[tuple[int, str, str, int | None, Decimal]] = [
    (1, "TOTAL", "Certificate credits", None, Decimal(30)),
    (2, "TOTAL", "Associate credits", None, Decimal(60)),
    (2, "ENGL", "English composition", 2, Decimal(6)),
    (3, "TOTAL", "Bachelor credits", None, Decimal(120)),
    (3, "MATH", "Mathematics", 1, Decimal(6)),
    (3, "ENGL", "English", 2, Decimal(6)),
    (4, "TOTAL", "Master credits", None, Decimal(36)),
]


def add_calculation_data(data: DemoData) -> None:
    """Courses numbered 400 and up carry an advanced weight, seminars an honors weight."""
    columns, rows = data.tables["courses"]
    weighted: list[Row] = []
    for row in rows:
        number = int("".join(ch for ch in row[1] if ch.isdigit()))
        weight = ADVANCED if number >= 400 else HONORS if "Seminar" in row[2] else Decimal(0)
        weighted.append((*row, weight))
    data.tables["courses"] = ([*columns, "gpa_weight"], weighted)
    data.add(
        "graduation_requirements",
        ["id", "level_id", "code", "name", "department_id", "credits_required"],
        [(i, *r) for i, r in enumerate(REQUIREMENTS, 1)],
    )
