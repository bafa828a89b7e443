"""What the console's lists share: a refused list parameter is a 400 naming it, and a page's
next and previous links keep its filters and sort."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlencode

from belltower.api import FieldError
from belltower.errors import InvalidInput

from .errors import BadQuery, FieldErrors


@contextmanager
def query_parameters() -> Iterator[None]:
    """Inside, input refused by the services is a bad query (400), not an invalid body (422)."""
    try:
        yield
    except BadQuery:
        raise
    except InvalidInput as exc:
        raise BadQuery(
            [FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted)]
        ) from None
    except FieldErrors as exc:
        raise BadQuery(exc.errors) from None


def check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise BadQuery(
            [FieldError(field="limit", message=f"{limit} is out of range", accepted=f"1 to {most}")]
        )


def page_link(path: str, params: Mapping[str, object], cursor: str | None) -> str | None:
    """The link of the page at ``cursor`` with the same parameters (None when there is none)."""
    if cursor is None:
        return None
    kept = {k: v for k, v in params.items() if v not in ("", None) and k != "cursor"}
    return f"{path}?{urlencode({**kept, 'cursor': cursor})}"


def link_header(links: Mapping[str, str | None]) -> str | None:
    """An RFC 8288 ``Link`` header of the pages that exist, e.g. ``<...>; rel="next"``."""
    parts = [f'<{url}>; rel="{rel}"' for rel, url in links.items() if url]
    return ", ".join(parts) or None
