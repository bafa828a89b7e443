"""A client for Jotform's REST API (``https://api.jotform.com``; ``eu-api.jotform.com`` and
``hipaa-api.jotform.com`` for accounts kept there).

Built against ``GET /form/{formID}/submissions`` with the account's API key (sent as the
``APIKEY`` header, which Jotform takes as it takes the ``apiKey`` query parameter, so the key
stays out of addresses), ``offset`` / ``limit`` (at most 1,000 a page), ``filter`` (a JSON
object, e.g. ``{"created_at:gt": "2026-03-01 00:00:00"}``) and ``orderby``. Every answer is
``{"responseCode", "message", "content", "resultSet": {"offset", "limit", "count"},
"limit-left"}``; a refused key or a form the account does not hold is 401. Submissions carry
``id``, ``created_at``, ``status`` (``ACTIVE``, ``DELETED``, ...) and ``answers``: question id
-> ``{"name", "type", "text", "answer"}``, where ``answer`` is a string or, for composite
fields, an object (``control_fullname``: first, middle, last; ``control_phone``: full;
``control_birthdate``: month, day, year).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from belltower.errors import ConfigurationError, JobFailed

from .webapi import WebApi

PAGE = 1000


def message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return str(body.get("message") if isinstance(body, dict) else body)[:300]


class JotformClient(WebApi):
    vendor = "Jotform"

    def __init__(self, base_url: str, api_key: str, *, key_name: str = "the Jotform API key",
                 **options: Any) -> None:  # fmt: skip
        super().__init__(base_url, headers={"APIKEY": api_key, "Accept": "application/json"},
                         **options)  # fmt: skip
        self._key_name = key_name

    def describe(self, response: httpx.Response) -> str:
        return message(response)

    async def submissions(
        self, form_id: str, created_after: str, limit: int
    ) -> AsyncIterator[dict[str, Any]]:
        """The form's submissions created after ``created_after`` (``YYYY-MM-DD HH:MM:SS``),
        ordered by creation time as Jotform orders them, at most ``limit``."""
        offset, seen = 0, 0
        query = json.dumps({"created_at:gt": created_after})
        while seen < limit:
            page = min(PAGE, limit - seen)
            path = f"/form/{form_id}/submissions"
            response = await self.send(
                "GET", path, f"GET {path}",
                params={"offset": offset, "limit": page, "filter": query, "orderby": "created_at"},
            )  # fmt: skip
            if response.status_code == 401:
                raise ConfigurationError(
                    f"Jotform refused {self._key_name} for form {form_id} ({message(response)}); "
                    "check the key, that the account holds the form, and base_url (EU and HIPAA "
                    "accounts have their own API address)"
                )
            if response.status_code != 200:
                raise JobFailed(
                    f"Jotform answered {response.status_code} to GET {path}: {message(response)}"
                )
            body = response.json()
            content = body.get("content") if isinstance(body, dict) else None
            if not isinstance(content, list):
                raise JobFailed(f"Jotform's answer to GET {path} has no list of submissions")
            for item in content:
                yield item
            seen += len(content)
            count = int((body.get("resultSet") or {}).get("count", len(content)))
            if count < page or not content:
                return
            offset += len(content)
