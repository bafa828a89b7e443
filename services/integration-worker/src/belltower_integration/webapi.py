"""The base of the clients for outside web APIs (Moodle, Blackboard): one HTTP client fenced to
public hosts (:mod:`.outbound`) when the worker's settings are given, and one retry rule.

Network errors, 429 and 5xx are tried again: after ``Retry-After`` when the server says how
long, else with exponential backoff; other answers go back to the caller to read.
"""

from __future__ import annotations

import asyncio
from typing import Any, Self

import httpx

from belltower.errors import Unavailable
from belltower.settings import Settings

from . import outbound


class WebApi:
    vendor = "the server"
    """How messages name the other side (``Moodle``, ``Blackboard``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 60.0,
        attempts: int = 4,
        first_delay_s: float = 1.0,
        settings: Settings | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._attempts = attempts
        self._first_delay = first_delay_s
        options: dict[str, Any] = {"base_url": self.base_url, "timeout": timeout_s}
        if headers:
            options["headers"] = headers
        # With the worker's settings, every connection is fenced to public (or allowed) hosts.
        self._http = (
            outbound.client(settings, "param.base_url", **options)
            if settings is not None
            else httpx.AsyncClient(**options)
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    def describe(self, response: httpx.Response) -> str:
        """What an error answer says, for a message (never more than a line)."""
        return response.reason_phrase

    async def send(
        self, method: str, path: str, what: str | None = None, **kw: Any
    ) -> httpx.Response:
        """One request, tried again on network errors, 429 and 5xx; ``what`` names it in errors."""
        what = what or f"{method} {path}"
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if attempt == self._attempts:
                    raise Unavailable(
                        f"{self.vendor} at {self.base_url} did not answer {what} "
                        f"({type(exc).__name__}); check the job's base_url parameter and the network"
                    ) from None
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                if attempt == self._attempts:
                    raise Unavailable(
                        f"{self.vendor} answered {response.status_code} to {what} "
                        f"{self._attempts} times: {self.describe(response)}"
                    )
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():  # the server says when: wait that long, no more
                    await asyncio.sleep(min(float(retry_after), 300.0))
                    continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
        raise AssertionError("unreachable")
