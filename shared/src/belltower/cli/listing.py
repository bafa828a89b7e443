"""Following a list of the HTTP API page by page: each reply's ``next_cursor`` asks for the next
(the server sorts, searches and filters; the CLI never holds more than it prints)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import msgspec

from .remote import Api

T = TypeVar("T")
PAGE = 200


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def follow(
    api: Api, path: str, item: type[T], params: dict[str, Any], most: int | None = None
) -> Iterator[T]:
    """The items of ``path``'s pages in the server's order, at most ``most`` (None: all)."""
    left = most
    cursor: str | None = None
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        page = api.get(path, Page[item], **params, limit=size, cursor=cursor)  # type: ignore[valid-type]
        yield from page.items
        if left is not None:
            left -= len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return
