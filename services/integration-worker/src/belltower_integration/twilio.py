"""A client for Twilio's Programmable Messaging and Programmable Voice APIs: send a text or
place a call, fetch its status.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` takes form fields ``To`` (E.164),
``From`` or ``MessagingServiceSid``, ``Body`` and optionally ``StatusCallback``, with HTTP basic
auth (account SID, auth token), and answers 201 with the Message (``sid``, ``status``).
``GET .../Messages/{Sid}.json`` answers the Message with its current ``status`` (``queued``,
``sending``, ``sent``, ``delivered``, ``undelivered``, ``failed``, ...) and ``error_code``.
``POST .../Calls.json`` takes ``To``, ``From`` (a voice-capable number of the account or a
verified caller id), ``Twiml`` (what to do when answered, at most 4,000 characters) and
optionally ``StatusCallback`` with ``StatusCallbackEvent`` (repeated), and answers 201 with the
Call; ``GET .../Calls/{Sid}.json`` answers its ``status`` (``queued``, ``ringing``,
``in-progress``, then ``completed``, ``busy``, ``failed``, ``no-answer`` or ``canceled``).
Errors are JSON ``{"code", "message", "more_info", "status"}``; 429 is rate limiting (with
``Retry-After``); code 21610 means the recipient replied STOP.

Neither API takes an idempotency key (the ``I-Twilio-Idempotency-Token`` header is on the
webhooks Twilio sends, not on requests to it), so a POST whose answer was lost is not retried
here: the message stays queued and the next run sends it (at-least-once, like SMTP).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from belltower.errors import ConfigurationError, Unavailable
from belltower.settings import Settings

from . import outbound

API_VERSION = "2010-04-01"
OPTED_OUT = 21610
"""Twilio's error for a number that replied STOP: it will refuse every text to it."""
PENDING = frozenset({"accepted", "queued", "sending", "sent", "scheduled"})
"""Statuses a message can still leave; the others (delivered, undelivered, failed, read,
canceled) are final."""
CALL_PENDING = frozenset({"queued", "ringing", "in-progress"})
"""Statuses a call can still leave; the others (completed, busy, failed, no-answer, canceled)
are final."""
CallEvent = Literal["initiated", "ringing", "answered", "completed"]
"""The call progress events a ``StatusCallback`` can be told of (Twilio's default: completed)."""
MAX_TWIML_CHARS = 4000
"""Twilio's limit on a call's inline ``Twiml`` (its error 32018)."""
MAX_RETRY_AFTER_S = 60.0
ERRORS_URL = "https://www.twilio.com/docs/errors/"
"""Where Twilio explains an error code: named from the code, not taken from ``more_info``."""
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}\Z")
"""A Twilio sid (``SM...``, ``CA...``): it goes into the path of the status request later."""


class Refused(Exception):
    """Twilio refused this one message (a 4xx with a Twilio error code): sending it again will
    not help, unlike a 429 or a 5xx."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(
            f"Twilio error {code} ({ERRORS_URL}{code}): {message}"
            if code
            else f"HTTP {status}: {message}"
        )
        self.status = status
        self.code = code
        self.message = str(self)


@dataclass(frozen=True)
class Receipt:
    sid: str
    status: str
    error_code: int | None = None


def _error(response: httpx.Response) -> tuple[int | None, str]:
    """Twilio's error code and message, on one line and shortened (what an outside server sent
    is bounded); its ``more_info`` is not repeated, the code names the page."""
    try:
        body = response.json()
    except ValueError:
        return None, f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return None, f"HTTP {response.status_code}"
    code = body.get("code")
    message = _UNPRINTABLE.sub(" ", str(body.get("message", ""))).strip()
    return (code if isinstance(code, int) else None), message[:200]


def _receipt(body: Any) -> Receipt:
    if not isinstance(body, dict) or not _SID.match(str(body.get("sid", ""))):
        raise Unavailable("Twilio answered without a sid (two letters and 32 hex digits)")
    code = body.get("error_code")
    return Receipt(
        body["sid"], str(body.get("status", "")), code if isinstance(code, int) else None
    )


class TwilioClient:
    """Sends texts and places calls for one account; 429 waits as Retry-After says (up to a
    minute), 5xx backs off."""

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        *,
        settings: Settings,
        sender: str = "",
        messaging_service_sid: str = "",
        status_callback: str = "",
        caller_id: str = "",
        call_status_callback: str = "",
        call_status_events: Sequence[str] = (),
        attempts: int = 4,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._path = f"/{API_VERSION}/Accounts/{account_sid}/Messages"
        self._calls = f"/{API_VERSION}/Accounts/{account_sid}/Calls"
        self._from = (
            {"MessagingServiceSid": messaging_service_sid}
            if messaging_service_sid
            else {"From": sender}
        )
        self._callback = status_callback
        self._caller_id = caller_id
        self._call_callback = call_status_callback
        self._call_events = list(call_status_events)
        self._attempts = attempts
        self._sleep = sleep
        self._http = outbound.client(
            settings, "param.twilio_base_url", base_url=self.base_url,
            auth=(account_sid, auth_token), headers={"Accept": "application/json"},
        )  # fmt: skip

    async def __aenter__(self) -> TwilioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def send(self, to: str, body: str) -> Receipt:
        form = {"To": to, "Body": body, **self._from}
        if self._callback:
            form["StatusCallback"] = self._callback
        return _receipt(await self._request("POST", f"{self._path}.json", data=form))

    async def fetch(self, sid: str) -> Receipt:
        return _receipt(await self._request("GET", f"{self._path}/{sid}.json"))

    async def call(self, to: str, twiml: str) -> Receipt:
        """Place a call that does what ``twiml`` says when answered."""
        form: dict[str, str | list[str]] = {"To": to, "From": self._caller_id, "Twiml": twiml}
        if self._call_callback:
            form["StatusCallback"] = self._call_callback
            if self._call_events:
                form["StatusCallbackEvent"] = self._call_events
        return _receipt(await self._request("POST", f"{self._calls}.json", data=form))

    async def fetch_call(self, sid: str) -> Receipt:
        return _receipt(await self._request("GET", f"{self._calls}/{sid}.json"))

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        delay = 1.0
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._http.request(method, path, **kw)
            except httpx.ConnectError as exc:  # never reached Twilio: safe to try again
                if attempt == self._attempts:
                    raise Unavailable(
                        f"Twilio at {self.base_url} could not be reached ({exc!r})"
                    ) from None
            except httpx.TransportError as exc:
                # The request may have reached Twilio: a POST is not repeated in this run.
                raise Unavailable(
                    f"Twilio at {self.base_url} did not answer {method} ({type(exc).__name__})"
                ) from None
            else:
                status = response.status_code
                if status < 300:
                    return response.json()
                code, message = _error(response)
                if status in (401, 403):
                    raise ConfigurationError(
                        f"Twilio refused the account SID and auth token ({code}: {message}); "
                        "check the secrets named by twilio_account_sid_secret and twilio_auth_token_secret"
                    )
                if status != 429 and status < 500:
                    raise Refused(status, code, message)
                if attempt == self._attempts:
                    raise Unavailable(
                        f"Twilio answered {status} {self._attempts} times ({code}: {message})"
                    )
                delay = _retry_after(response, delay)
            await self._sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


def _retry_after(response: httpx.Response, delay: float) -> float:
    """How long to wait before the next try: what Retry-After says, if it says seconds; a wait
    longer than a minute is not waited out in this run."""
    value = response.headers.get("Retry-After", "")
    if not value.isdigit():
        return delay
    wait = float(value)
    if wait > MAX_RETRY_AFTER_S:
        raise Unavailable(
            f"Twilio asked to wait {wait:g} s (Retry-After); the next run tries again"
        )
    return wait
