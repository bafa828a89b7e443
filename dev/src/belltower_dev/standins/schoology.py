"""A stand-in for Schoology's REST API v1, built to its published contract.

Two-legged OAuth 1.0: every call carries ``Authorization: OAuth realm="Schoology API", ...``
with the consumer key, ``oauth_token=""``, ``oauth_version="1.0"``, a timestamp within five
minutes and a nonce never used before with it, and an HMAC-SHA1 (over the method, URL and
query) or PLAINTEXT signature checked with oauthlib's RFC 5849 functions; anything else is 401
(a repeated nonce: "Duplicate timestamp/nonce combination, possible replay attack").

Under ``/v1``: ``GET gradingperiods`` (paged by ``start``/``limit``); ``POST users`` (bulk,
``update_existing`` matches ``school_uid``; a username held by another user is refused),
``GET users?school_uids=``, ``DELETE users?uids=`` (made inactive); ``POST courses`` (bulk,
``update_existing`` matches ``course_code``); ``GET sections?section_school_codes=``,
``POST courses/{id}/sections`` and ``PUT sections`` (bulk; a ``section_school_code`` is unique in
the school, ``grading_periods`` must name known ones); ``POST enrollments`` (bulk, multi-realm)
and ``DELETE enrollments?enrollment_ids=``. Bulk bodies hold at most 50 records (more: 400);
each record gets its own ``response_code`` and, when refused, ``message``. ``throttle_first``
answers that many calls 429 (Retry-After 0), ``fail_first`` that many 503.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from oauthlib.oauth1.rfc5849 import signature, utils
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

BULK = 50
REQUIRED = {
    "user": ("school_uid", "name_first", "name_last", "role_id"),
    "course": ("title", "course_code"),
    "section": ("title", "grading_periods"),
    "enrollment": ("realm", "section_id", "uid", "admin", "status"),
}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"response_code": status, "message": message}, status)


def item(code: int, message: str = "", **fields: Any) -> dict[str, Any]:
    return {"response_code": code, **({"message": message} if message else {}), **fields}


class SchoologyStandIn(ThreadedServer):
    name = "Schoology stand-in"

    def __init__(
        self, key: str = "sc-key", secret: str = "sc-secret", *, grading_periods: dict[str, int]
        | None = None, throttle_first: int = 0, fail_first: int = 0, page_size: int = 200,
    ) -> None:  # fmt: skip
        self.key, self.secret, self.page_size = key, secret, page_size
        self.throttle_first, self.fail_first = throttle_first, fail_first
        self.grading_periods = grading_periods or {"CURR": 901, "NEXT": 902, "PAST": 900}
        self.users: dict[str, dict[str, Any]] = {}  # by Schoology id
        self.courses: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, dict[str, Any]] = {}
        self.enrollments: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.refusals: list[str] = []  # why each 401 was given
        self.signature_methods: set[str] = set()
        self._nonces: set[tuple[str, str]] = set()
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        v1 = "/v1"
        self.serve(Starlette(routes=[
            Route(f"{v1}/gradingperiods", self._grading_periods, methods=["GET"]),
            Route(f"{v1}/users", self._users, methods=["GET", "POST", "DELETE"]),
            Route(f"{v1}/courses", self._courses, methods=["POST"]),
            Route(f"{v1}/sections", self._sections, methods=["GET", "PUT"]),
            Route(f"{v1}/courses/{{course:str}}/sections", self._new_sections, methods=["POST"]),
            Route(f"{v1}/enrollments", self._enrollments, methods=["POST", "DELETE"]),
        ]))  # fmt: skip

    # -- what every call goes through --------------------------------------------------------

    def _refuse(self, why: str) -> JSONResponse:
        self.refusals.append(why)
        return error(401, why)

    def _check(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        if self.fail_first > 0:
            self.fail_first -= 1
            return error(503, "Service Unavailable")
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return JSONResponse(
                {"response_code": 429, "message": "Too Many Requests"}, 429,
                headers={"Retry-After": "0"},
            )  # fmt: skip
        header = request.headers.get("authorization", "")
        if not header.startswith("OAuth "):
            return self._refuse("Missing OAuth Authorization header")
        oauth = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(header)}
        if oauth.get("realm") != "Schoology API":
            return self._refuse("Invalid realm")
        if oauth.get("oauth_consumer_key") != self.key:
            return self._refuse("Invalid consumer key")
        if oauth.get("oauth_token") != "":
            return self._refuse("oauth_token must be present and empty for two-legged OAuth")
        if oauth.get("oauth_version", "1.0") != "1.0":
            return self._refuse("Unsupported OAuth version")
        method = oauth.get("oauth_signature_method")
        try:
            stamp = int(oauth.get("oauth_timestamp", ""))
        except ValueError:
            return self._refuse("Invalid timestamp")
        if abs(time.time() - stamp) > 300:
            return self._refuse("Timestamp expired")
        nonce = oauth.get("oauth_nonce", "")
        with self._lock:
            if not nonce or (str(stamp), nonce) in self._nonces:
                return self._refuse(
                    "Duplicate timestamp/nonce combination, possible replay attack. Request rejected."
                )
            self._nonces.add((str(stamp), nonce))
        if method == "PLAINTEXT":
            expected = signature.sign_plaintext(self.secret, "")
        elif method == "HMAC-SHA1":
            params = signature.collect_parameters(
                uri_query=request.url.query, headers={"Authorization": header}
            )
            base = signature.signature_base_string(
                request.method, signature.base_string_uri(str(request.url)),
                signature.normalize_parameters(params),
            )  # fmt: skip
            key = f"{utils.escape(self.secret)}&".encode()  # RFC 5849 3.4.2: no token secret
            expected = base64.b64encode(
                hmac.new(key, base.encode(), hashlib.sha1).digest()
            ).decode()
        else:
            return self._refuse("Unsupported signature method")
        if oauth.get("oauth_signature") != expected:
            return self._refuse("Invalid OAuth signature")
        self.signature_methods.add(str(method))
        return None

    async def _bulk(self, request: Request, wrap: tuple[str, str], kind: str | None,
                    take: Callable[[dict[str, Any], bool], dict[str, Any]]) -> Response:  # fmt: skip
        """A bulk body ``{plural: {singular: [...]}}`` of 1 to 50 records, each answered alone:
        refused for a missing required field, else by ``take(record, update_existing)``."""
        plural, singular = wrap
        try:
            records = (await request.json())[plural][singular]
        except (ValueError, KeyError, TypeError):
            return error(400, f"Expected {{{plural}: {{{singular}: [...]}}}}")
        if not isinstance(records, list) or not records:
            return error(400, f"{plural} is empty")
        if len(records) > BULK:
            return error(400, f"At most {BULK} {plural} can be sent at a time")
        update = request.query_params.get("update_existing") == "1"
        with self._lock:
            results = [
                item(400, why) if kind and (why := self._missing(kind, r)) else take(r, update)
                for r in records
            ]
        return JSONResponse(
            {"enrollments": {"enrollment": results}}
            if plural == "enrollments"
            else {singular: results}
        )

    @staticmethod
    def _missing(kind: str, record: dict[str, Any]) -> str:
        gone = [f for f in REQUIRED[kind] if record.get(f) in (None, "", [])]
        return f"Missing required field(s): {', '.join(gone)}" if gone else ""

    def _id(self) -> str:
        return str(next(self._ids))

    @staticmethod
    def _list(request: Request, param: str) -> list[str] | None:
        """A comma-separated list of 1 to 50 ids or codes; None when empty or too long."""
        ids = [i for i in request.query_params.get(param, "").split(",") if i]
        return ids if 0 < len(ids) <= BULK else None

    # -- grading periods ---------------------------------------------------------------------

    async def _grading_periods(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        start = int(request.query_params.get("start", "0"))
        limit = min(int(request.query_params.get("limit", "20")), self.page_size)
        periods = [{"id": gp, "title": t, "active": "1"} for t, gp in self.grading_periods.items()]
        return JSONResponse(
            {"gradingperiods": periods[start : start + limit], "total": len(periods)}
        )

    # -- users -------------------------------------------------------------------------------

    def active_user(self, school_uid: str) -> dict[str, Any] | None:
        return next(
            (u for u in self.users.values() if u["school_uid"] == school_uid and u["active"]),
            None,
        )

    def _take_user(self, r: dict[str, Any], update: bool) -> dict[str, Any]:
        if not (r.get("username") or r.get("primary_email")):
            return item(400, "Either a username or an email address is required")
        same = self.active_user(str(r["school_uid"]))
        if same is not None and not update:
            return item(409, f"A user with unique ID {r['school_uid']} already exists")
        if r.get("username") and any(
            u.get("username") == r["username"] and u is not same for u in self.users.values()
        ):
            return item(400, f"The username {r['username']} is already in use")
        if same is None:
            same = {"id": self._id(), "active": True}
            self.users[same["id"]] = same
        same.update(r)
        return item(200, id=same["id"], school_uid=r["school_uid"],
                    location=f"{self.url}/v1/users/{same['id']}")  # fmt: skip

    async def _users(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        if request.method == "POST":
            return await self._bulk(request, ("users", "user"), "user", self._take_user)
        param = "school_uids" if request.method == "GET" else "uids"
        ids = self._list(request, param)
        if ids is None:
            return error(400, f"{param}: 1 to {BULK} comma-separated values")
        if request.method == "GET":
            return JSONResponse({"user": [u for u in self.users.values()
                                          if u["school_uid"] in ids and u["active"]]})  # fmt: skip
        for uid in ids:  # DELETE: made inactive
            if uid in self.users:
                self.users[uid]["active"] = False
                self.users[uid]["kept_enrollments"] = (
                    request.query_params.get("option_keep_enrollments") == "1"
                )
        return Response(status_code=204)

    # -- courses and sections ----------------------------------------------------------------

    def _take_course(self, r: dict[str, Any], update: bool) -> dict[str, Any]:
        same = next(
            (c for c in self.courses.values() if c["course_code"] == r["course_code"]), None
        )
        if same is not None and not update:
            return item(409, f"Course code {r['course_code']} already exists")
        if same is None:
            same = {"id": self._id()}
            self.courses[same["id"]] = same
        same.update(r)
        return item(200, id=same["id"], course_code=r["course_code"])

    async def _courses(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        return await self._bulk(request, ("courses", "course"), "course", self._take_course)

    def _section_refusal(self, r: dict[str, Any], this: dict[str, Any] | None) -> str:
        code = r.get("section_school_code")
        if not code and not r.get("section_code"):
            return "Either section_code or section_school_code must be set"
        known = set(self.grading_periods.values())
        if any(gp not in known for gp in r["grading_periods"]):
            return "Invalid grading period"
        if code and any(s["section_school_code"] == code and s is not this
                        for s in self.sections.values()):  # fmt: skip
            return f"Section school code {code} already exists"
        return ""

    async def _new_sections(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        course = request.path_params["course"]
        if course not in self.courses:
            return error(404, "Course not found")

        def take(r: dict[str, Any], update: bool) -> dict[str, Any]:
            if why := self._section_refusal(r, None):
                return item(400, why)
            section = {"id": self._id(), "course_id": course, **r}
            self.sections[section["id"]] = section
            return item(200, id=section["id"], section_school_code=r.get("section_school_code", ""))

        return await self._bulk(request, ("sections", "section"), "section", take)

    def _change_section(self, r: dict[str, Any], update: bool) -> dict[str, Any]:
        this = self.sections.get(str(r.get("id")))
        if this is None:
            return item(404, f"Section {r.get('id')} not found")
        if why := self._missing("section", r) or self._section_refusal(r, this):
            return item(400, why)
        this.update({k: v for k, v in r.items() if k != "id"})
        return item(200, id=this["id"])

    async def _sections(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        if request.method == "PUT":
            return await self._bulk(request, ("sections", "section"), None, self._change_section)
        codes = self._list(request, "section_school_codes")
        if codes is None:
            return error(400, f"section_school_codes: 1 to {BULK} comma-separated codes")
        return JSONResponse({"section": [s for s in self.sections.values()
                                         if s["section_school_code"] in codes]})  # fmt: skip

    # -- enrollments -------------------------------------------------------------------------

    def _take_enrollment(self, r: dict[str, Any], update: bool) -> dict[str, Any]:
        section, uid = str(r["section_id"]), str(r["uid"])
        if r["realm"] != "section" or section not in self.sections:
            return item(404, f"Section {section} not found")
        if uid not in self.users or not self.users[uid]["active"]:
            return item(404, f"User {uid} not found")
        same = next((e for e in self.enrollments.values()
                     if e["section_id"] == section and e["uid"] == uid), None)  # fmt: skip
        if same is not None and not update:
            return item(409, "The user is already enrolled")
        if same is None:
            same = {"id": self._id(), "section_id": section, "uid": uid}
            self.enrollments[same["id"]] = same
        same.update(admin=int(r["admin"]), status=int(r["status"]))
        return item(200, id=same["id"], uid=uid, realm="section", realm_id=section)

    async def _enrollments(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        if request.method == "POST":
            wrap = ("enrollments", "enrollment")
            return await self._bulk(request, wrap, "enrollment", self._take_enrollment)
        ids = self._list(request, "enrollment_ids")
        if ids is None:
            return error(400, f"enrollment_ids: 1 to {BULK} ids")
        for e in ids:
            self.enrollments.pop(e, None)
        return Response(status_code=204)

    # -- what a test looks at ----------------------------------------------------------------

    def section_by_code(self, code: str) -> dict[str, Any] | None:
        return next((s for s in self.sections.values() if s["section_school_code"] == code), None)

    def members(self, code: str) -> dict[str, int]:
        """school_uid -> admin of the section with this section school code."""
        section = self.section_by_code(code)
        if section is None:
            return {}
        return {self.users[e["uid"]]["school_uid"]: e["admin"]
                for e in self.enrollments.values() if e["section_id"] == section["id"]}  # fmt: skip
