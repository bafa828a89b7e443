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

    async def _records(self, request: Request, plural: str, singular: str) -> Any:
        try:
            body = await request.json()
            records = body[plural][singular]
        except (ValueError, KeyError, TypeError):
            return error(400, f"Expected {{{plural}: {{{singular}: [...]}}}}")
        if not isinstance(records, list) or not records:
            return error(400, f"{plural} is empty")
        if len(records) > BULK:
            return error(400, f"At most {BULK} {plural} can be sent at a time")
        return records

    @staticmethod
    def _missing(kind: str, record: dict[str, Any]) -> str:
        gone = [f for f in REQUIRED[kind] if record.get(f) in (None, "", [])]
        return f"Missing required field(s): {', '.join(gone)}" if gone else ""

    def _id(self) -> str:
        return str(next(self._ids))

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

    async def _users(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        q = request.query_params
        if request.method == "GET":
            uids = [u for u in q.get("school_uids", "").split(",") if u]
            if len(uids) > BULK:
                return error(400, f"At most {BULK} school_uids")
            return JSONResponse({"user": [u for u in self.users.values()
                                          if u["school_uid"] in uids and u["active"]]})  # fmt: skip
        if request.method == "DELETE":
            ids = [u for u in q.get("uids", "").split(",") if u]
            if not ids or len(ids) > BULK:
                return error(400, f"uids: 1 to {BULK} Schoology ids")
            for uid in ids:
                if uid in self.users:
                    self.users[uid]["active"] = False
                    self.users[uid]["kept_enrollments"] = q.get("option_keep_enrollments") == "1"
            return Response(status_code=204)
        records = await self._records(request, "users", "user")
        if isinstance(records, Response):
            return records
        update = q.get("update_existing") == "1"
        results = []
        with self._lock:
            for r in records:
                if why := self._missing("user", r):
                    results.append(item(400, why))
                    continue
                if not (r.get("username") or r.get("primary_email")):
                    results.append(item(400, "Either a username or an email address is required"))
                    continue
                same = self.active_user(str(r["school_uid"]))
                if same is not None and not update:
                    results.append(
                        item(409, f"A user with unique ID {r['school_uid']} already exists")
                    )
                    continue
                holder = next((u for u in self.users.values() if r.get("username")
                               and u.get("username") == r["username"] and u is not same), None)  # fmt: skip
                if holder is not None:
                    results.append(item(400, f"The username {r['username']} is already in use"))
                    continue
                if same is None:
                    same = {"id": self._id(), "active": True}
                    self.users[same["id"]] = same
                same.update(r)
                results.append(item(200, id=same["id"], school_uid=r["school_uid"],
                                    location=f"{self.url}/v1/users/{same['id']}"))  # fmt: skip
        return JSONResponse({"user": results})

    # -- courses and sections ----------------------------------------------------------------

    async def _courses(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        records = await self._records(request, "courses", "course")
        if isinstance(records, Response):
            return records
        update = request.query_params.get("update_existing") == "1"
        results = []
        with self._lock:
            for r in records:
                if why := self._missing("course", r):
                    results.append(item(400, why))
                    continue
                same = next((c for c in self.courses.values()
                             if c["course_code"] == r["course_code"]), None)  # fmt: skip
                if same is not None and not update:
                    results.append(item(409, f"Course code {r['course_code']} already exists"))
                    continue
                if same is None:
                    same = {"id": self._id()}
                    self.courses[same["id"]] = same
                same.update(r)
                results.append(item(200, id=same["id"], course_code=r["course_code"]))
        return JSONResponse({"course": results})

    def _section_refusal(self, r: dict[str, Any], this: dict[str, Any] | None) -> str:
        if why := self._missing("section", r):
            return why
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
        records = await self._records(request, "sections", "section")
        if isinstance(records, Response):
            return records
        results = []
        with self._lock:
            for r in records:
                if why := self._section_refusal(r, None):
                    results.append(item(400, why))
                    continue
                section = {"id": self._id(), "course_id": course, **r}
                self.sections[section["id"]] = section
                results.append(item(200, id=section["id"],
                                    section_school_code=r.get("section_school_code", "")))  # fmt: skip
        return JSONResponse({"section": results})

    async def _sections(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        if request.method == "GET":
            codes = [
                c for c in request.query_params.get("section_school_codes", "").split(",") if c
            ]
            if len(codes) > BULK:
                return error(400, f"At most {BULK} section school codes")
            return JSONResponse({"section": [s for s in self.sections.values()
                                             if s["section_school_code"] in codes]})  # fmt: skip
        records = await self._records(request, "sections", "section")
        if isinstance(records, Response):
            return records
        results = []
        with self._lock:
            for r in records:
                this = self.sections.get(str(r.get("id")))
                if this is None:
                    results.append(item(404, f"Section {r.get('id')} not found"))
                    continue
                if why := self._section_refusal(r, this):
                    results.append(item(400, why))
                    continue
                this.update({k: v for k, v in r.items() if k != "id"})
                results.append(item(200, id=this["id"]))
        return JSONResponse({"section": results})

    # -- enrollments -------------------------------------------------------------------------

    async def _enrollments(self, request: Request) -> Response:
        if (fault := self._check(request)) is not None:
            return fault
        if request.method == "DELETE":
            ids = [e for e in request.query_params.get("enrollment_ids", "").split(",") if e]
            if not ids or len(ids) > BULK:
                return error(400, f"enrollment_ids: 1 to {BULK} ids")
            for e in ids:
                self.enrollments.pop(e, None)
            return Response(status_code=204)
        records = await self._records(request, "enrollments", "enrollment")
        if isinstance(records, Response):
            return records
        update = request.query_params.get("update_existing") == "1"
        results = []
        with self._lock:
            for r in records:
                if why := self._missing("enrollment", r):
                    results.append(item(400, why))
                    continue
                section, uid = str(r["section_id"]), str(r["uid"])
                if r["realm"] != "section" or section not in self.sections:
                    results.append(item(404, f"Section {section} not found"))
                    continue
                if uid not in self.users or not self.users[uid]["active"]:
                    results.append(item(404, f"User {uid} not found"))
                    continue
                same = next((e for e in self.enrollments.values()
                             if e["section_id"] == section and e["uid"] == uid), None)  # fmt: skip
                if same is not None and not update:
                    results.append(item(409, "The user is already enrolled"))
                    continue
                if same is None:
                    same = {"id": self._id(), "section_id": section, "uid": uid}
                    self.enrollments[same["id"]] = same
                same.update(admin=int(r["admin"]), status=int(r["status"]))
                results.append(item(200, id=same["id"], uid=uid, realm="section", realm_id=section))
        return JSONResponse({"enrollments": {"enrollment": results}})

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
