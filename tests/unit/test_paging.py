"""Cursors and sorts of keyset pages (belltower.paging): what a client may send is checked."""

from __future__ import annotations

import pytest

from belltower import paging
from belltower.errors import InvalidInput

pytestmark = pytest.mark.unit

SORTS = (
    paging.SortKey("title", ("lower(title)", "id"), ("text", "uuid")),
    paging.SortKey("priority", ("priority", "lower(title)", "id"), ("int", "text", "uuid")),
)


def test_sort_names_the_accepted_values_when_unknown() -> None:
    assert paging.parse_sort("-priority", SORTS).descending
    assert paging.parse_sort("title", SORTS).text == "title"
    with pytest.raises(InvalidInput) as refused:
        paging.parse_sort("owner; DROP TABLE jobs", SORTS)
    assert refused.value.field == "sort"
    assert refused.value.accepted == "title, priority (prefix '-' for descending)"


def test_a_cursor_round_trips_and_is_refused_elsewhere() -> None:
    order = paging.parse_sort("-priority", SORTS)
    scope = paging.scope_of({"q": "bus", "state": ""})
    text = paging.encode_cursor(order, scope, ["500", "late bus", "0c4e…"], "before")
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    back = paging.decode_cursor(text, order, scope)
    assert (back.direction, back.keys) == ("before", ["500", "late bus", "0c4e…"])
    for other_order, other_scope, why in (
        (paging.parse_sort("priority", SORTS), scope, "sort"),
        (order, paging.scope_of({"q": "van"}), "other filters"),
    ):
        with pytest.raises(InvalidInput) as refused:
            paging.decode_cursor(text, other_order, other_scope)
        assert refused.value.field == "cursor" and why in refused.value.reason
    for junk in ("", "%%%", "bm90IGpzb24", "W10", "x" * 5000):
        with pytest.raises(InvalidInput) as refused:
            paging.decode_cursor(junk, order, scope)
        assert refused.value.field == "cursor"


def test_keyset_compares_every_key_one_way_and_turns_round_for_the_page_before() -> None:
    order = paging.parse_sort("-priority", SORTS)
    first = paging.keyset(order, None, 3)
    assert (first.where, first.reverse) == (None, False)
    assert first.order_by == "priority DESC, lower(title) DESC, id DESC"
    after = paging.Cursor(1, "-priority", "s", "after", ["5", "a", "b"])
    plan = paging.keyset(order, after, 3)
    assert (
        plan.where
        == "(priority, lower(title), id) < ($3::text::int, $4::text::text, $5::text::uuid)"
    )
    before = paging.keyset(order, paging.Cursor(1, "-priority", "s", "before", ["5", "a", "b"]), 3)
    assert before.where is not None and " > " in before.where and before.reverse
    assert before.order_by == "priority, lower(title), id"


def test_cursors_of_a_page_say_where_the_neighbours_are() -> None:
    order = paging.parse_sort("title", SORTS)
    assert paging.cursors(["a", "1"], ["c", "3"], order, "s", None, more=False) == (None, None)
    nxt, prev = paging.cursors(["a", "1"], ["c", "3"], order, "s", None, more=True)
    assert prev is None and paging.decode_cursor(nxt or "", order, "s").keys == ["c", "3"]
    came = paging.Cursor(1, "title", "s", "before", ["d", "4"])
    nxt, prev = paging.cursors(["a", "1"], ["c", "3"], order, "s", came, more=False)
    assert prev is None and nxt is not None, "the first page, reached going back"


def test_search_text_and_like_pattern() -> None:
    assert paging.like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"
    with pytest.raises(InvalidInput):
        paging.check_search("bus\x00")
    with pytest.raises(InvalidInput):
        paging.check_search("x" * 201)


def test_fit_keeps_a_reply_under_the_message_limit() -> None:
    items = [{"text": "x" * 1000} for _ in range(2000)]
    kept, cut = paging.fit(items)
    assert cut and 400 < len(kept) < 600
    assert paging.fit(items[:3]) == (items[:3], False)
    huge = [{"text": "x" * 600_000}]
    assert paging.fit(huge) == (huge, False), "one item always goes, or paging would stop"
