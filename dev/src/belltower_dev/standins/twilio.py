"""A stand-in for Twilio's Programmable Messaging and Voice APIs, built to their published
contract, for tests.

It serves ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields ``To``, ``From``
or ``MessagingServiceSid``, ``Body``, optional ``StatusCallback``; HTTP basic auth with the
account SID and auth token) and ``GET .../Messages/{Sid}.json``. It checks what Twilio checks and
fails as Twilio fails, with Twilio's error document ``{"code", "message", "more_info",
"status"}``: 401/20003 for bad credentials, 21604/21602/21603 for a missing To/Body/From,
21211 for a To that is not E.164, 21617 for a body over 1,600 characters, 21610 for a number that replied STOP, 429/20429 with
``Retry-After`` (``throttle_first``), 500/20500 (``fail_first``). A message is created
``queued`` (``accepted`` through a Messaging Service) and each fetch moves it on: ``sent``, then
``delivered`` (or ``undelivered`` with the error code set in ``undeliverable``).

Calls: ``POST .../Calls.json`` (``To``, ``From``, one of ``Twiml``/``Url``/``ApplicationSid``,
optional ``StatusCallback`` and repeated ``StatusCallbackEvent``) and ``GET .../Calls/{Sid}.json``,
with the same auth, rate limits and failures. It refuses a missing To (21201), From (21213) or
Twiml/Url (21205), a To (21211) or From (21212) that is not E.164, Twiml over 4,000 characters
(32018) or that does not parse as XML with a ``<Response>`` root (12100), and an unknown
progress event (21626). A call is created ``queued``; each fetch moves it on: ``ringing``, then
``in-progress`` and ``completed`` (or the final status set in ``unanswered``: ``busy``,
``no-answer``, ``failed``, ``canceled``). The TwiML's verbs and what it says are kept.

Everything accepted is kept in ``messages`` and ``calls`` for the test to inspect.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .server import ThreadedServer

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
ACCOUNT = "/2010-04-01/Accounts/{account_sid}"
BASE = ACCOUNT + "/Messages"
CALLS = ACCOUNT + "/Calls"
CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})


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
class Call:
    sid: str
    to: str
    sender: str
    twiml: str
    verbs: list[str]
    """The tags of the ``<Response>``'s children, in order."""
    said: list[str]
    """The text of each ``<Say>``, as Twilio would read it out (entities resolved)."""
    status: str = "queued"
    status_callback: str = ""
    status_events: list[str] = field(default_factory=list)
    fetches: int = 0


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
    unanswered: dict[str, str] = field(default_factory=dict)
    """Numbers whose calls end with this status (busy, no-answer, failed, canceled)."""
    messages: dict[str, Sms] = field(default_factory=dict)
    calls: dict[str, Call] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route(BASE + ".json", self._create, methods=["POST"]),
                Route(BASE + "/{sid}.json", self._fetch, methods=["GET"]),
                Route(CALLS + ".json", self._create_call, methods=["POST"]),
                Route(CALLS + "/{sid}.json", self._fetch_call, methods=["GET"]),
            ]
        )
        self.name = "Twilio stand-in"
        self.serve(app)

    def sent_to(self, number: str) -> list[Sms]:
        return [m for m in self.messages.values() if m.to == number]

    def called(self, number: str) -> list[Call]:
        return [c for c in self.calls.values() if c.to == number]

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

    async def _admit(self, request: Request) -> FormData | JSONResponse:
        """A POST's form, or what Twilio answers before reading one: 401, 429, 500."""
        if not self._authorized(request):
            return self._refuse(request, 401, 20003, "Authenticate")
        if (limited := self._limited(request)) is not None:
            return limited
        return await request.form()

    async def _create(self, request: Request) -> JSONResponse:
        form = await self._admit(request)
        if isinstance(form, JSONResponse):
            return form
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
        return self._created(request, self.messages, sms, self._resource)

    async def _fetch(self, request: Request) -> JSONResponse:
        return self._fetched(request, self.messages, self._advance, self._resource)

    def _advance(self, sms: Sms) -> None:
        if sms.fetches == 1:
            sms.status = "sent"
        elif sms.to in self.undeliverable:
            sms.status, sms.error_code = "undelivered", self.undeliverable[sms.to]
        else:
            sms.status = "delivered"

    def _created(
        self, request: Request, store: dict[str, Any], created: Any,
        resource: Callable[[Any], dict[str, Any]],
    ) -> JSONResponse:  # fmt: skip
        store[created.sid] = created
        self.requests.append(("POST", request.url.path, 201))
        return JSONResponse(resource(created), 201)

    def _fetched(
        self,
        request: Request,
        store: dict[str, Any],
        advance: Callable[[Any], None],
        resource: Callable[[Any], dict[str, Any]],
    ) -> JSONResponse:
        """A GET of one message or call: each one moves it a step on."""
        if not self._authorized(request):
            return self._refuse(request, 401, 20003, "Authenticate")
        found = store.get(request.path_params["sid"])
        if found is None:
            return self._refuse(request, 404, 20404, "The requested resource was not found")
        found.fetches += 1
        advance(found)
        self.requests.append(("GET", request.url.path, 200))
        return JSONResponse(resource(found))

    def _resource(self, sms: Sms) -> dict[str, Any]:
        return {
            "sid": sms.sid, "account_sid": self.account_sid, "to": sms.to, "from": sms.sender,
            "body": sms.body, "status": sms.status, "num_segments": "1", "direction": "outbound-api",
            "error_code": sms.error_code, "error_message": None, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sms.sid}.json",
        }  # fmt: skip

    # Calls -----------------------------------------------------------------------------------

    async def _fetch_call(self, request: Request) -> JSONResponse:
        return self._fetched(request, self.calls, self._ring, self._call_resource)

    def _ring(self, call: Call) -> None:
        """ringing, in-progress, completed; or ringing, then the number's ``unanswered`` status."""
        final = self.unanswered.get(call.to)
        steps = ("ringing", final) if final else ("ringing", "in-progress", "completed")
        call.status = steps[min(call.fetches, len(steps)) - 1]

    async def _create_call(self, request: Request) -> JSONResponse:
        form = await self._admit(request)
        if isinstance(form, JSONResponse):
            return form
        to, sender, twiml = (str(form.get(k, "")) for k in ("To", "From", "Twiml"))
        events = [str(e) for e in form.getlist("StatusCallbackEvent")]
        if not to:
            return self._refuse(request, 400, 21201, "No 'To' number is specified")
        if not sender:
            return self._refuse(request, 400, 21213, "No 'From' number is specified")
        if not (twiml or form.get("Url") or form.get("ApplicationSid")):
            return self._refuse(request, 400, 21205, "Url parameter is required.")
        if not E164.match(to):
            return self._refuse(request, 400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not E164.match(sender):
            return self._refuse(request, 400, 21212, f"Invalid 'From' Phone Number: {sender}")
        if len(twiml) > 4000:
            return self._refuse(
                request, 400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters"
            )
        try:  # a Url or ApplicationSid call has its TwiML fetched later: nothing to check here
            root = ElementTree.fromstring(twiml) if twiml else ElementTree.Element("Response")
        except ElementTree.ParseError:
            return self._refuse(request, 400, 12100, "Document parse failure")
        if root.tag != "Response":
            return self._refuse(request, 400, 12100, "Document parse failure")
        if not set(events) <= CALL_EVENTS:
            return self._refuse(request, 400, 21626, "Invalid 'StatusCallbackEvent'")
        verbs = list(root)
        call = Call(
            sid="CA" + secrets.token_hex(16), to=to, sender=sender, twiml=twiml,
            verbs=[v.tag for v in verbs], said=["".join(v.itertext()) for v in verbs if v.tag == "Say"],
            status_callback=str(form.get("StatusCallback", "")), status_events=events,
        )  # fmt: skip
        return self._created(request, self.calls, call, self._call_resource)

    def _call_resource(self, call: Call) -> dict[str, Any]:
        return {
            "sid": call.sid, "account_sid": self.account_sid, "to": call.to, "from": call.sender,
            "status": call.status, "direction": "outbound-api", "api_version": "2010-04-01",
            "start_time": None, "end_time": None, "duration": None, "price": None,
            "answered_by": None, "parent_call_sid": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json",
        }  # fmt: skip
