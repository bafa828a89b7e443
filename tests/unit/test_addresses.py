"""Address Corrections' and Parse Addresses' reading of a street line (usaddress, USPS Pub 28)."""

from __future__ import annotations

import pytest

from belltower_integration.jobs import addresses

pytestmark = pytest.mark.unit

MESSY = [
    # line1 as stored, as corrected
    ("  123  north  Main Street  SW ", "123 N Main St SW"),
    ("45 Court Street", "45 Court St"),
    ("9 EAST OAK AVENUE", "9 E OAK AVE"),
    ("77 Sunset Boulevard, Apt 3", "77 Sunset Blvd, Apt 3"),
    ("PO Box 12", "PO Box 12"),
]


@pytest.mark.parametrize(("line", "expected"), MESSY)
def test_corrected_line_abbreviates_only_directions_and_suffixes(line: str, expected: str) -> None:
    assert addresses.corrected_line(line) == expected
    assert addresses.corrected_line(expected) == expected


def test_address_parts_split_a_street_line_and_say_when_it_is_not_one() -> None:
    parts, problem = addresses.address_parts("123 N Main St SW", "Apt 4")
    assert problem is None and parts == {
        "house_number": "123", "pre_direction": "N", "street_name": "Main", "street_type": "St",
        "post_direction": "SW", "unit_type": "Apt", "unit": "4",
    }  # fmt: skip
    _, problem = addresses.address_parts("PO Box 12", None)
    assert problem == "not a street address (PO Box)"
