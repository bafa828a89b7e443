"""What the console's lists share: a refused list parameter is a 400 naming it, and a page's
next and previous links keep its filters and sort."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlencode

from belltower.api import FieldError
from belltower.errors import InvalidInput

from .errors import BadQuery

PAGING = frozenset({"sort", "cursor", "limit"})
"""The parameters that say which page, not which rows: refused as a bad request (400)."""


@contextmanager
def query_parameters() -> Iterator[None]:
    """Inside, a refused sort, cursor or limit is a bad query (400); a refused filter value
    stays invalid input (422), as everywhere else."""
    try:
        yield
    except InvalidInput as exc:
        if exc.field not in PAGING:
            raise
        raise BadQuery(
            [FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted)]
        ) from None


def check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise BadQuery(
            [FieldError(field="limit", message=f"{limit} is out of range", accepted=f"1 to {most}")]
        )


def page_link(path: str, params: Mapping[str, object], cursor: str | None) -> str | None:
    """The link of the page at ``cursor`` with the same parameters (None when there is none)."""
    if cursor is None:
        return None
    return first_link(path, {**params, "cursor": cursor})


def first_link(path: str, params: Mapping[str, object]) -> str:
    """The link of the first page with these parameters (those given, in their order)."""
    kept = {k: v for k, v in params.items() if v not in ("", None)}
    return f"{path}?{urlencode(kept)}" if kept else path


def link_header(links: Mapping[str, str | None]) -> str | None:
    """An RFC 8288 ``Link`` header of the pages that exist, e.g. ``<...>; rel="next"``."""
    parts = [f'<{url}>; rel="{rel}"' for rel, url in links.items() if url]
    return ", ".join(parts) or None
