"""Phone numbers in the form SMS providers take: E.164 (``+`` country code and number, at most
15 digits, no leading zero)."""

from __future__ import annotations

import re

E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")
E164_FORM = "E.164: '+', the country code and the number, 2-15 digits, e.g. +14155550123"
_PUNCTUATION = re.compile(r"[ ().\-/]")


def is_e164(number: str) -> bool:
    return bool(E164.match(number))


def to_e164(raw: str, default_country: str = "") -> str | None:
    """``raw`` as an E.164 number, or None when it cannot be one. Spaces, dots, dashes, slashes
    and parentheses are dropped; a number without ``+`` gets ``default_country`` (digits, e.g.
    ``1`` for North America; a national trunk prefix ``0`` is dropped first). Anything else
    (letters, extensions, control characters) is not a number."""
    number = _PUNCTUATION.sub("", raw)
    if number.startswith("00"):
        number = "+" + number[2:]
    if not number.startswith("+"):
        if not default_country or not number.isdigit():
            return None
        national = number.lstrip("0") if default_country != "1" else number
        if default_country == "1" and len(national) == 11 and national.startswith("1"):
            national = national[1:]  # a North American number written with its country code
        number = f"+{default_country}{national}"
    return number if is_e164(number) else None
