"""The base of clients whose API takes an OAuth 2 bearer token (client credentials): one token
fetched when needed, shared by the requests in flight, and fetched again once when the server
refuses it (expired or revoked) before the refusal is reported."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from belltower.errors import ConfigurationError

from .webapi import WebApi


class BearerApi(WebApi):
    margin_s = 30.0
    """A token is fetched again this long before the server says it expires."""

    def __init__(self, base_url: str, **options: Any) -> None:
        super().__init__(base_url, **options)
        self._token: str | None = None
        self._expires = 0.0
        self._fetching = asyncio.Lock()

    async def fetch_token(self) -> tuple[str, float]:
        """A new access token and its lifetime in seconds (``expires_in``)."""
        raise NotImplementedError

    def token_refused(self, method: str, path: str, response: httpx.Response) -> str:
        """What to say when even a fresh token is refused: which credentials to check."""
        return f"{self.vendor} refused a fresh access token for {method} {path}"

    async def _token_now(self) -> str:
        async with self._fetching:
            if self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = await self.fetch_token()
                self._expires = time.monotonic() + max(0.0, lifetime - self.margin_s)
            return self._token

    async def authorized(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request with the bearer token; a 401 gets one new token, then is reported."""
        given = kw.pop("headers", None) or {}
        for fresh in (False, True):
            token = await self._token_now()
            headers = {**given, "Authorization": f"Bearer {token}"}
            response = await self.send(method, path, headers=headers, **kw)
            if response.status_code != 401 or fresh:
                break
            if self._token == token:  # not already replaced by a request alongside
                self._token = None
        if response.status_code == 401:
            raise ConfigurationError(self.token_refused(method, path, response))
        return response
