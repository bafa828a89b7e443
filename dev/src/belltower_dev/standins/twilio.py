"""A stand-in for Twilio's Programmable Messaging API, built to its published contract, for tests.

It serves ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields ``To``, ``From``
or ``MessagingServiceSid``, ``Body``, optional ``StatusCallback``; HTTP basic auth with the
account SID and auth token) and ``GET .../Messages/{Sid}.json``. It checks what Twilio checks and
fails as Twilio fails, with Twilio's error document ``{"code", "message", "more_info",
"status"}``: 401/20003 for bad credentials, 21604/21602/21603 for a missing To/Body/From,
21211 for a To that is not E.164, 21617 for a body over 1,600 characters, 21610 for a number that replied STOP, 429/20429 with
``Retry-After`` (``throttle_first``), 500/20500 (``fail_first``). A message is created
``queued`` (``accepted`` through a Messaging Service) and each fetch moves it on: ``sent``, then
``delivered`` (or ``undelivered`` with the error code set in ``undeliverable``).
Everything accepted is kept in ``messages`` for the test to inspect.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .server import ThreadedServer

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
BASE = "/2010-04-01/Accounts/{account_sid}/Messages"


@dataclass
class Sms:
    sid: str
    to: str
    sender: str
    body: str
    status: str
    status_callback: str = ""
    fetches: int = 0
    error_code: int | None = None


@dataclass
class TwilioStandIn(ThreadedServer):
    account_sid: str = "AC" + "0" * 31 + "1"
    auth_token: str = "twilio-test-token"
    stopped: set[str] = field(default_factory=set)
    """Numbers that replied STOP: texting them answers 21610."""
    undeliverable: dict[str, int] = field(default_factory=dict)
    """Numbers whose texts end ``undelivered`` with this error code."""
    throttle_first: int = 0
    retry_after: str = "1"
    fail_first: int = 0
    messages: dict[str, Sms] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route(BASE + ".json", self._create, methods=["POST"]),
                Route(BASE + "/{sid}.json", self._fetch, methods=["GET"]),
            ]
        )
        self.name = "Twilio stand-in"
        self.serve(app)

    def sent_to(self, number: str) -> list[Sms]:
        return [m for m in self.messages.values() if m.to == number]

    # The API ---------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return (
            request.headers.get("authorization") == f"Basic {expected}"
            and request.path_params["account_sid"] == self.account_sid
        )

    def _refuse(
        self, request: Request, status: int, code: int, message: str, **headers: str
    ) -> JSONResponse:
        self.requests.append((request.method, request.url.path, status))
        body = {"code": code, "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}  # fmt: skip
        return JSONResponse(body, status, headers=headers)

    def _limited(self, request: Request) -> JSONResponse | None:
        with self._lock:
            if self.throttle_first > 0:
                self.throttle_first -= 1
                return self._refuse(
                    request, 429, 20429, "Too Many Requests", **{"Retry-After": self.retry_after}
                )
            if self.fail_first > 0:
                self.fail_first -= 1
                return self._refuse(request, 500, 20500, "Internal Server Error")
        return None

    async def _create(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._refuse(request, 401, 20003, "Authenticate")
        if (limited := self._limited(request)) is not None:
            return limited
        form = await request.form()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        sender = str(form.get("From", "") or form.get("MessagingServiceSid", ""))
        if not to:
            return self._refuse(request, 400, 21604, "A 'To' phone number is required.")
        if not body:
            return self._refuse(request, 400, 21602, "Message body is required.")
        if not sender:
            return self._refuse(request, 400, 21603, "A 'From' phone number is required.")
        if not E164.match(to):
            return self._refuse(
                request, 400, 21211, f"The 'To' number {to} is not a valid phone number."
            )
        if len(body) > 1600:
            return self._refuse(
                request,
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            )
        if to in self.stopped:
            return self._refuse(request, 400, 21610, "Attempt to send to unsubscribed recipient")
        sms = Sms(
            sid="SM" + secrets.token_hex(16), to=to, sender=sender, body=body,
            status="accepted" if sender.startswith("MG") else "queued",
            status_callback=str(form.get("StatusCallback", "")),
        )  # fmt: skip
        self.messages[sms.sid] = sms
        self.requests.append(("POST", request.url.path, 201))
        return JSONResponse(self._resource(sms), 201)

    async def _fetch(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._refuse(request, 401, 20003, "Authenticate")
        sms = self.messages.get(request.path_params["sid"])
        if sms is None:
            return self._refuse(request, 404, 20404, "The requested resource was not found")
        sms.fetches += 1
        if sms.fetches == 1:
            sms.status = "sent"
        elif sms.to in self.undeliverable:
            sms.status, sms.error_code = "undelivered", self.undeliverable[sms.to]
        else:
            sms.status = "delivered"
        self.requests.append(("GET", request.url.path, 200))
        return JSONResponse(self._resource(sms))

    def _resource(self, sms: Sms) -> dict[str, Any]:
        return {
            "sid": sms.sid, "account_sid": self.account_sid, "to": sms.to, "from": sms.sender,
            "body": sms.body, "status": sms.status, "num_segments": "1", "direction": "outbound-api",
            "error_code": sms.error_code, "error_message": None, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sms.sid}.json",
        }  # fmt: skip
