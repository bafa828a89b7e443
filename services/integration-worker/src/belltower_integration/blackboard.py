"""A client for Blackboard Learn's public REST API (``/learn/api/public/v1``).

An application authenticates with OAuth 2 client credentials: ``POST /learn/api/public/v1/
oauth2/token`` with HTTP basic auth (application key and secret, secrets by reference) and
``grant_type=client_credentials``; the bearer token lasts ``expires_in`` seconds and is fetched
again when it runs out or is refused. Records are addressed by their external id
(``users/externalId:S1``, ``courses/externalId:MATH101-CURR``), so a run repeated after a crash
finds what the first one made. Lists come in pages: ``{"results": [...], "paging":
{"nextPage": "/learn/api/public/v1/users?offset=100"}}``. Errors are ``{"status", "message"}``;
429 carries Retry-After. Built against Learn's REST API as documented for Learn SaaS
(users, courses and course memberships at v1; courses also have a v3 that this does not need).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from belltower.errors import ConfigurationError, JobFailed

from .webapi import WebApi

API = "/learn/api/public/v1"


class BlackboardError(JobFailed):
    """Learn refused one request (4xx other than 401): ``status`` and Learn's message."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"Blackboard refused {method} {path} with {status}: {message}")
        self.status = status
        self.reason = message


def external(kind: str, external_id: str) -> str:
    """The path of a record by its external id, quoted so an id stays one path segment."""
    return f"{API}/{kind}/externalId:{quote(external_id, safe='')}"


class BlackboardClient(WebApi):
    vendor = "Blackboard"

    def __init__(
        self,
        base_url: str,
        key: str,
        secret: str,
        *,
        secret_names: str = "the Blackboard application key and secret",
        **options: Any,
    ) -> None:
        super().__init__(base_url, **options)
        self._auth = (key, secret)
        self._names = secret_names
        self._token: str | None = None
        self._expires = 0.0

    def describe(self, response: httpx.Response) -> str:
        return _message(response)

    async def _token_now(self) -> str:
        if self._token and time.monotonic() < self._expires:
            return self._token
        response = await self.send(
            "POST",
            f"{API}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=self._auth,
        )
        if response.status_code in (400, 401):
            raise ConfigurationError(
                f"Blackboard refused the application's credentials ({_message(response)}); check "
                f"{self._names} and that the application is registered on this Learn site"
            )
        if response.status_code >= 400:
            raise JobFailed(f"Blackboard answered {response.status_code} to the token request")
        body = response.json()
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + max(0.0, float(body.get("expires_in", 3600)) - 30)
        return self._token

    async def request(
        self, method: str, path: str, json: Any = None, *, missing_ok: bool = False
    ) -> Any:
        """A call with the bearer token (fetched again once if Learn says it expired). Returns
        the JSON body, or None for 204 and, with ``missing_ok``, for 404."""
        for fresh in (False, True):
            token = await self._token_now()
            response = await self.send(
                method, path, json=json, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code == 401 and not fresh:
                self._token = None
                continue
            break
        if response.status_code == 401:
            raise ConfigurationError(
                f"Blackboard refused the access token for {method} {path}; check {self._names}"
            )
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise BlackboardError(method, path, response.status_code, _message(response))
        return None if response.status_code == 204 or not response.content else response.json()

    async def pages(
        self, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every result of a list, following ``paging.nextPage``."""
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in (params or {}).items())
        next_path: str | None = f"{path}?{query}" if query else path
        while next_path:
            body = await self.request("GET", next_path)
            for item in body.get("results", []):
                yield item
            next_path = (body.get("paging") or {}).get("nextPage")
            if next_path and not next_path.startswith(API + "/"):
                raise JobFailed(f"Blackboard's nextPage {next_path[:100]!r} is not under {API}")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(
            body.get("message") or body.get("error_description") or body.get("error") or body
        )[:300]
    return str(body)[:300]
