"""A client for Element451's Web Data Export API (the published ``[IE] Web Data Export API``).

``POST <client API address>/v2/users/export`` (the address is the school's own,
``https://<client>.api.451.io`` in production) with the client's feature token in the
``Feature`` header (a secret by reference) and ``{"item": {...}}``: in segment mode the segment's
guid, ``per_page`` (at most 50 users a request), ``last_id`` (empty for the first page, then the
``meta.next_last_id`` of the page before), a ``template`` of ``columns`` (``field``, ``mode``
``slug``, ``slug``) and ``options.column_key`` ``slug`` so each row is keyed by the columns'
slugs (``user-elementid`` always comes with it). The last page is the one with no rows or no
``next_last_id``. 429 and 5xx are tried again; 401 and 403 say the token was refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from belltower.errors import ConfigurationError, JobFailed

from .webapi import WebApi

PER_PAGE = 50
COLUMNS = {
    "email": ("Email", "user-email-address"),
    "first_name": ("First Name", "user-first-name"),
    "middle_name": ("Middle Name", "user-middle-name"),
    "last_name": ("Last Name", "user-last-name"),
}
ID_SLUG = "user-elementid"


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or response.reason_phrase)[:300]
    return response.reason_phrase


class Element451Client(WebApi):
    vendor = "Element451"

    def __init__(self, base_url: str, feature_token: str, *,
                 token_name: str = "the Element451 feature token", **options: Any) -> None:  # fmt: skip
        super().__init__(base_url, headers={"Feature": feature_token, "Accept": "application/json"},
                         **options)  # fmt: skip
        self._token_name = token_name

    def describe(self, response: httpx.Response) -> str:
        return _message(response)

    async def segment_users(self, segment: str, limit: int) -> AsyncIterator[dict[str, Any]]:
        """The users of ``segment`` with the columns of ``COLUMNS``, keyed by slug; at most
        ``limit``."""
        template = {
            "columns": [{"field": f, "mode": "slug", "slug": s} for f, s in COLUMNS.values()]
        }
        last_id: str | None = None
        seen = 0
        while seen < limit:
            item: dict[str, Any] = {
                "segment": segment, "per_page": min(PER_PAGE, limit - seen),
                "options": {"column_key": "slug"}, "template": template,
            }  # fmt: skip
            if last_id:
                item["last_id"] = last_id
            response = await self.send("POST", "/v2/users/export", "the users export",
                                       json={"item": item})  # fmt: skip
            if response.status_code in (401, 403):
                raise ConfigurationError(
                    f"Element451 refused {self._token_name} ({_message(response)}); check the "
                    "token and that base_url is the school's Element451 API address"
                )
            if response.status_code != 200:
                raise JobFailed(
                    f"Element451 answered {response.status_code} to the users export of segment "
                    f"{segment}: {_message(response)}"
                )
            body = response.json()
            rows = body.get("data") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise JobFailed("Element451's export answer has no data list")
            for row in rows:
                if isinstance(row, dict):
                    yield row
            seen += len(rows)
            last_id = str((body.get("meta") or {}).get("next_last_id") or "")
            if not rows or not last_id:
                return
