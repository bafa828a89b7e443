"""Keyset pagination shared by every list the services answer: sort keys, cursors, SQL.

A list is ordered by a named sort (``title``, ``-scheduled_for``: a leading ``-`` descends), each
sort being SQL expressions that end in a unique column, so the order is total and ties break
the same way every time. A page ends with a **cursor**: the sort's key values of its last row
(or, for the page before, its first row), the sort's name and a fingerprint of the filters,
as URL-safe base64 of a JSON array. The next page asks for rows after those values with one
row comparison, ``(k1, k2, id) > ($1, $2, $3)``, which an index on the same expressions answers
without reading the rows before it; rows inserted between two pages never duplicate or skip
one already listed.

A cursor is opaque to clients and checked like any input: one made for another sort or other
filters, or that is not ours, is refused naming the ``cursor`` field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec

from .errors import InvalidInput

Direction = Literal["after", "before"]
R = TypeVar("R")
MAX_CURSOR = 2_048
"""A cursor longer than this is not one we made (keys are a title, a time and an id)."""
_VERSION = 1


@dataclass(frozen=True)
class SortKey:
    """One sort a list offers: its SQL expressions, most significant first, the last unique.

    ``types`` are the SQL types the cursor's text values are cast back to, one per expression.
    """

    name: str
    exprs: tuple[str, ...]
    types: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.exprs) != len(self.types):
            raise ValueError(
                f"sort {self.name}: {len(self.exprs)} expressions, {len(self.types)} types"
            )


@dataclass(frozen=True)
class Order:
    """A parsed ``sort`` parameter: which key, and whether it descends."""

    key: SortKey
    descending: bool

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.key.name


class Cursor(msgspec.Struct, array_like=True, frozen=True):
    """What a cursor carries: version, sort, filters' fingerprint, direction and key values."""

    version: int
    sort: str
    scope: str
    direction: Direction
    keys: list[str | None]


_cursor_decoder = msgspec.json.Decoder(Cursor)
_encoder = msgspec.json.Encoder()


def accepted_sorts(keys: Sequence[SortKey]) -> str:
    return ", ".join(k.name for k in keys) + " (prefix '-' for descending)"


def parse_sort(value: str, keys: Sequence[SortKey], field: str = "sort") -> Order:
    """The sort named by ``value``; anything else is refused naming the accepted sorts."""
    name = value.strip()
    descending = name.startswith("-")
    name = name.removeprefix("-")
    for key in keys:
        if key.name == name:
            return Order(key, descending)
    shown = value if len(value) <= 40 else value[:40] + "…"
    raise InvalidInput(field, f"{shown!r} is not a sort key", accepted_sorts(keys))


def check_limit(limit: int, most: int, field: str = "limit") -> int:
    if not 1 <= limit <= most:
        raise InvalidInput(field, f"{limit} is out of range", f"1 to {most}")
    return limit


def scope_of(filters: Mapping[str, object]) -> str:
    """A short fingerprint of the filters a cursor was made under (not secret: a consistency check)."""
    text = _encoder.encode(sorted((k, str(v)) for k, v in filters.items() if v not in (None, "")))
    return hashlib.blake2s(text, digest_size=6).hexdigest()


def encode_cursor(
    order: Order, scope: str, keys: Sequence[str | None], direction: Direction = "after"
) -> str:
    raw = _encoder.encode(Cursor(_VERSION, order.text, scope, direction, list(keys)))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order: Order, scope: str, field: str = "cursor") -> Cursor:
    """The cursor ``text`` stands for, refused unless it was made for this sort and these filters."""
    accepted = "the cursor of a page of this list, with the same sort and filters"
    if len(text) > MAX_CURSOR:
        raise InvalidInput(field, f"is longer than {MAX_CURSOR} characters", accepted)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidInput(field, "is not a cursor this list gave", accepted) from None
    if cursor.version != _VERSION or len(cursor.keys) != len(order.key.exprs):
        raise InvalidInput(field, "is not a cursor this list gave", accepted)
    if cursor.sort != order.text:
        raise InvalidInput(
            field, f"was made for sort {cursor.sort!r}, not {order.text!r}", accepted
        )
    if cursor.scope != scope:
        raise InvalidInput(field, "was made for other filters", accepted)
    return cursor


@dataclass(frozen=True)
class Keyset:
    """The SQL of one page: the extra select list, the WHERE part, the ORDER BY and its args."""

    select: str
    where: str | None
    order_by: str
    args: list[str | None]
    reverse: bool
    """Rows come back in the opposite order (a page before a cursor) and must be reversed."""


def keyset(order: Order, cursor: Cursor | None, first_param: int) -> Keyset:
    """The select list (``_k0, _k1, …`` as text), keyset condition and ORDER BY of a page.

    A page after the cursor goes the sort's way; one before it goes the other way (then reversed)
    so both are one index range read. The row comparison needs every key one way, which is why a
    descending sort descends on every expression, its tie-breaking id too.
    """
    key = order.key
    select = ", ".join(f"({e})::text AS _k{i}" for i, e in enumerate(key.exprs))
    backwards = cursor is not None and cursor.direction == "before"
    descending = order.descending != backwards
    way = " DESC" if descending else ""
    order_by = ", ".join(f"{e}{way}" for e in key.exprs)
    if cursor is None:
        return Keyset(select, None, order_by, [], backwards)
    params = ", ".join(f"${first_param + i}::text::{t}" for i, t in enumerate(key.types))
    where = f"({', '.join(key.exprs)}) {'<' if descending else '>'} ({params})"
    return Keyset(select, where, order_by, list(cursor.keys), backwards)


def keys_of(row: Mapping[str, object], order: Order) -> list[str | None]:
    """A row's key values as the select list of :func:`keyset` gave them."""
    return [row[f"_k{i}"] for i in range(len(order.key.exprs))]  # type: ignore[misc]


def like_pattern(text: str) -> str:
    """``text`` as an ILIKE pattern matching it anywhere, its own ``%``, ``_`` and ``\\`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def check_search(q: str, field: str = "q", most: int = 200) -> str:
    q = q.strip()
    if len(q) > most:
        raise InvalidInput(field, f"is longer than {most} characters", f"at most {most} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in q):
        raise InvalidInput(field, "has control characters", "printable text")
    return q


def fetch_size(limit: int) -> int:
    """Rows to ask the database for: one more than the page, to know whether another follows."""
    return limit + 1


def page_rows(rows: list[R], limit: int, plan: Keyset) -> tuple[list[R], bool]:
    """The page's rows in the sort's order and whether more lie beyond them (the way read)."""
    more = len(rows) > limit
    rows = rows[:limit]
    if plan.reverse:
        rows.reverse()
    return rows, more


def cursors(
    first: Sequence[str | None] | None,
    last: Sequence[str | None] | None,
    order: Order,
    scope: str,
    cursor: Cursor | None,
    more: bool,
    cut: bool = False,
) -> tuple[str | None, str | None]:
    """The (next, previous) cursors of a page whose first and last rows have these keys.

    ``more``: the read found rows beyond the page in the way it went; ``cut``: the page was
    shortened (to fit one message), so a next page follows its last row whatever the read found.
    """
    if first is None or last is None:
        if cursor is None:
            return None, None
        # An empty page past either end: the way back is the cursor itself, turned round.
        turned: Direction = "before" if cursor.direction == "after" else "after"
        back = encode_cursor(order, scope, cursor.keys, turned)
        return (None, back) if cursor.direction == "after" else (back, None)
    backwards = cursor is not None and cursor.direction == "before"
    has_next = backwards or more or cut
    has_prev = more if backwards else cursor is not None
    return (
        encode_cursor(order, scope, last, "after") if has_next else None,
        encode_cursor(order, scope, first, "before") if has_prev else None,
    )


PAGE_BYTES = 512 * 1024
"""A page's encoded items stay under this: half of NATS's default 1 MB payload, leaving room
for the envelope and a server configured lower."""
_size_encoder = msgspec.json.Encoder()


def fit(items: list[R], most: int = PAGE_BYTES) -> tuple[list[R], bool]:
    """The first items whose JSON stays under ``most`` bytes (at least one), and whether some
    were left out: what one reply may carry."""
    size = 0
    for i, item in enumerate(items):
        size += len(_size_encoder.encode(item))
        if i and size > most:
            return items[:i], True
    return items, False
