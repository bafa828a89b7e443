"""A client for the Mailchimp Marketing API 3.0: audience (list) members.

The API key (by secret reference) ends in its datacenter (``...-us6``), which names the API
host, ``https://us6.api.mailchimp.com/3.0``; requests carry it by HTTP basic auth (any user
name). ``POST /3.0/lists/{list_id}`` subscribes or updates up to 500 members at once
(``update_existing``) and answers 200 with ``new_members``, ``updated_members`` and
per-member ``errors``; a member is addressed by its subscriber hash, the MD5 of the lower-cased
email address (``PATCH /3.0/lists/{list_id}/members/{hash}`` changes one, e.g. its address).
Errors are problem documents (``type``, ``title``, ``status``, ``detail``, ``instance``); 429
and 5xx are tried again (:class:`.webapi.WebApi`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote

import httpx

from belltower.errors import ConfigurationError, JobFailed

from .webapi import WebApi

BATCH_LIMIT = 500
DATACENTER = re.compile(r"-([a-z]{2,4}[0-9]{1,3})\Z")


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def api_root(key: str, secret_name: str) -> str:
    """The API host the key's datacenter names."""
    found = DATACENTER.search(key)
    if not found:
        raise ConfigurationError(
            f"the Mailchimp API key in secret {secret_name!r} does not end in its datacenter "
            "(like '-us6'); copy the whole key from Mailchimp's Account > Extras > API keys"
        )
    return f"https://{found.group(1)}.api.mailchimp.com"


class MailchimpError(JobFailed):
    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"Mailchimp refused {what} with {status}: {detail}")
        self.status = status
        self.detail = detail


class MailchimpClient(WebApi):
    vendor = "Mailchimp"

    def __init__(self, base_url: str, key: str, *, secret_name: str, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._auth = ("belltower", key)
        self._secret = secret_name

    def describe(self, response: httpx.Response) -> str:
        return detail_of(response)

    async def _call(self, method: str, path: str, body: Any) -> httpx.Response:
        response = await self.send(method, path, json=body, auth=self._auth)
        if response.status_code in (401, 403):
            raise ConfigurationError(
                f"Mailchimp refused the API key ({detail_of(response)}); check the secret "
                f"{self._secret!r}"
            )
        return response

    async def batch(self, list_id: str, members: list[dict[str, Any]]) -> dict[str, Any]:
        """Subscribe or update up to 500 members; the answer's ``new_members``,
        ``updated_members`` and ``errors``."""
        assert len(members) <= BATCH_LIMIT
        path = f"/3.0/lists/{quote(list_id, safe='')}"
        response = await self._call("POST", path, {"members": members, "update_existing": True})
        if response.status_code != 200:
            raise MailchimpError(
                f"the batch for list {list_id}", response.status_code, detail_of(response)
            )
        body: dict[str, Any] = response.json()
        return body

    async def change(self, list_id: str, old_hash: str, member: dict[str, Any]) -> bool:
        """Change one member (e.g. its email address); False when Mailchimp has no such member."""
        path = f"/3.0/lists/{quote(list_id, safe='')}/members/{old_hash}"
        response = await self._call("PATCH", path, member)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise MailchimpError(
                f"the change of member {old_hash}", response.status_code, detail_of(response)
            )
        return True


def detail_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return str(body)[:300]
