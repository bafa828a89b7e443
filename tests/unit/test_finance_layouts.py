"""Partner file layouts as data: what they write reads back, and what is wrong is named."""

from __future__ import annotations

import typing
from datetime import date
from decimal import Decimal

import pytest

from belltower_integration.finance.exports import SummaryColumn, enrollment_status
from belltower_integration.finance.layout import Field, Layout, LayoutError
from belltower_integration.finance.layouts import ALL, billing

pytestmark = pytest.mark.unit

FIXED = Layout("test", "fixed", "Fixed", (
    Field("Id", "id", width=6), Field("Amount", "amount", "money", width=9),
    Field("Day", "day", "date", width=8), Field("Kind", "kind", "code", width=1, choices=("A", "B")),
), delimiter=None)  # fmt: skip


def test_a_fixed_width_file_reads_back_what_was_written() -> None:
    rows = [{"id": "S1", "amount": Decimal("-12.5"), "day": date(2026, 3, 2), "kind": "A"}]
    text = FIXED.render(rows)
    assert text == "S1       -12.5020260302A\r\n"
    parsed, problems = FIXED.parse(text, "f.txt")
    assert problems == [] and {k: v for k, v in parsed[0].items() if k != "_line"} == rows[0]


def test_every_problem_names_the_file_the_row_and_the_field() -> None:
    _, problems = FIXED.parse(
        "S1       -12.5020260302A\r\nS2         x.yz20261301C\r\nshort\r\n", "f.txt"
    )
    assert problems == [
        "f.txt row 3: 5 characters, expected 24",
        "f.txt row 2 field Amount: 'x.yz' is not an amount (like 125.00 or -40.50)",
        "f.txt row 2 field Day: '20261301' is not a date (YYYY-MM-DD or YYYYMMDD)",
        "f.txt row 2 field Kind: 'C' is not one of A, B",
    ]
    with pytest.raises(LayoutError, match="does not fit 9 characters"):
        FIXED.render(
            [{"id": "S1", "amount": Decimal("12345678.00"), "day": date(2026, 1, 1), "kind": "A"}]
        )


def test_a_delimited_file_needs_its_header_and_its_field_count() -> None:
    layout = Layout(
        "test",
        "csv",
        "Csv",
        (Field("a", "a"), Field("b", "b", "int", required=False)),
        delimiter="|",
    )
    assert layout.parse("a|c\nx|1\n", "d.txt")[1] == ["d.txt row 1: header 'a|c', expected 'a|b'"]
    rows, problems = layout.parse("a|b\nx|\ny|2|3\n|4\n", "d.txt")
    assert problems == [
        "d.txt row 3: 3 fields, expected 2",
        "d.txt row 4 field a: a value is required",
    ]
    assert rows[0] == {"_line": 2, "a": "x", "b": None}


def test_the_billing_summary_columns_are_the_layouts_fields_and_every_layout_says_whose_it_is() -> (
    None
):
    assert list(typing.get_args(SummaryColumn)) == billing.SUMMARY.names
    for layout in ALL:
        assert len(set(layout.names)) == len(layout.names)
        assert "Belltower's own layout" in layout.markdown()


@pytest.mark.parametrize(
    ("credits", "status"), [(0, "N"), (3, "L"), (6, "H"), (9, "T"), (12, "F"), (15, "F")]
)
def test_enrollment_status_follows_the_terms_full_time_threshold(credits: int, status: str) -> None:
    assert enrollment_status(Decimal(credits), Decimal(12)) == status


def test_the_docs_page_shows_every_layout_as_the_modules_declare_it() -> None:
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "billing-and-aid.md").read_text()
    for layout in ALL:
        assert layout.markdown() in page, f"docs/billing-and-aid.md: update {layout.title}"
