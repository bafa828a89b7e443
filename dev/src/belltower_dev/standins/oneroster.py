"""A stand-in for a OneRoster 1.2 REST service that takes rosters pushed to it.

Token endpoint (1EdTech Security Framework, OAuth 2 client credentials): ``POST /oauth/token``
with HTTP basic auth and ``grant_type=client_credentials``; OAuth errors (``invalid_client``
401, ``unsupported_grant_type`` 400). Every other call needs ``Authorization: Bearer``.
Records at ``/ims/oneroster/rostering/v1p2/<collection>/{sourcedId}`` for orgs,
academicSessions, courses, classes, users and enrollments: ``GET`` (the binding's read, wrapped
``{"org": {...}}``), ``PUT`` with ``{"<class>": {...}}`` (201 made, 200 replaced) and ``DELETE``
(204, 404 unknown). It checks what the binding's data model requires: the required fields of
each class, the vocabularies (status, org type, session type, classType, roleType, role,
enrollment role), dates ``YYYY-MM-DD`` and ``dateLastModified`` as a UTC datetime, booleans
``enabledUser`` (true/false) and ``primary`` ("true"/"false"), the GUIDRef shape, a body whose
sourcedId is the path's, and that every reference points at a record it holds (so a client must
send in dependency order); it refuses to delete a record another still refers to. Refusals are
``imsx_StatusInfo`` with codeMinor ``invalid_data`` (400), ``unknownobject`` (404),
``unauthorisedrequest`` (401), ``server_busy`` (429 with ``Retry-After: 0``) and
``internal_server_error`` (500).
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

PATH = "/ims/oneroster/rostering/v1p2"
CLASS = {"orgs": "org", "academicSessions": "academicSession", "courses": "course",
         "classes": "class", "users": "user", "enrollments": "enrollment"}  # fmt: skip
REQUIRED = {
    "org": ("name", "type"),
    "academicSession": ("title", "type", "startDate", "endDate", "schoolYear"),
    "course": ("title", "org"),
    "class": ("title", "course", "school", "terms"),
    "user": ("enabledUser", "givenName", "familyName", "roles"),
    "enrollment": ("user", "class", "school", "role"),
}
VOCAB = {
    ("org", "type"): {"department", "school", "district", "local", "state", "national"},
    ("academicSession", "type"): {"gradingPeriod", "semester", "schoolYear", "term"},
    ("class", "classType"): {"homeroom", "scheduled"},
    ("enrollment", "role"): {"administrator", "proctor", "student", "teacher"},
    ("enrollment", "primary"): {"true", "false"},
}
ROLE_TYPES = {"primary", "secondary"}
ROLES = {"aide", "counselor", "districtAdministrator", "guardian", "parent", "principal",
         "proctor", "relative", "siteAdministrator", "student", "systemAdministrator",
         "teacher"}  # fmt: skip
# (class, field) -> the collection a reference must point into
REFS = {
    ("org", "parent"): "orgs", ("academicSession", "parent"): "academicSessions",
    ("course", "org"): "orgs", ("course", "schoolYear"): "academicSessions",
    ("class", "course"): "courses", ("class", "school"): "orgs",
    ("class", "terms"): "academicSessions", ("user", "primaryOrg"): "orgs",
    ("user", "agents"): "users", ("enrollment", "user"): "users",
    ("enrollment", "class"): "classes", ("enrollment", "school"): "orgs",
}  # fmt: skip
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")


def status_info(status: int, minor: str, description: str) -> JSONResponse:
    return JSONResponse(
        {
            "imsx_codeMajor": "failure",
            "imsx_severity": "error",
            "imsx_description": description,
            "imsx_CodeMinor": {
                "imsx_codeMinorField": [
                    {
                        "imsx_codeMinorFieldName": "TargetEndSystem",
                        "imsx_codeMinorFieldValue": minor,
                    }
                ]
            },
        },
        status,
        headers={"Retry-After": "0"} if status == 429 else None,
    )


def _refs(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


class OneRosterStandIn(ThreadedServer):
    name = "OneRoster stand-in"

    def __init__(self, client_id: str = "or-client", client_secret: str = "or-secret", *,
                 throttle_first: int = 0, fail_first: int = 0, expire_tokens: bool = False,
                 refuse: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self.client_id, self.client_secret = client_id, client_secret
        self.throttle_first, self.fail_first = throttle_first, fail_first
        self.expire_tokens = expire_tokens
        self.refuse = set(
            refuse
        )  # sourcedIds answered 400 invalid_data (a record it will not take)
        self.records: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in CLASS}
        self.requests: list[tuple[str, str]] = []
        self.scopes: list[str] = []
        self.tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.serve(Starlette(routes=[
            Route("/oauth/token", self._token, methods=["POST"]),
            Route(f"{PATH}/{{collection:str}}/{{sid:path}}", self._one,
                  methods=["GET", "PUT", "DELETE"]),
        ]))  # fmt: skip

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def _fault(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        if self.fail_first > 0:
            self.fail_first -= 1
            return status_info(500, "internal_server_error", "Internal server error")
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return status_info(429, "server_busy", "Too many requests")
        return None

    async def _token(self, request: Request) -> Response:
        if (fault := self._fault(request)) is not None:
            return fault
        expected = (
            "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        )
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, 401)
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        self.scopes.append(str(form.get("scope", "")))
        token = f"or-tok-{next(self._ids)}"
        self.tokens.add(token)
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": 3600,
             "scope": str(form.get("scope", ""))}
        )  # fmt: skip

    def _unauthorized(self, request: Request) -> Response | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return status_info(401, "unauthorisedrequest", "The bearer token is not valid")
        if self.expire_tokens:
            self.expire_tokens = False
            self.tokens.discard(token)
            return status_info(401, "unauthorisedrequest", "The bearer token has expired")
        return None

    async def _one(self, request: Request) -> Response:
        if (fault := self._fault(request) or self._unauthorized(request)) is not None:
            return fault
        collection, sid = request.path_params["collection"], unquote(request.path_params["sid"])
        if collection not in CLASS:
            return status_info(404, "unknownobject", f"No endpoint {collection}")
        held = self.records[collection]
        with self._lock:
            if request.method == "GET":
                if sid not in held:
                    return status_info(404, "unknownobject", f"No {CLASS[collection]} {sid}")
                return JSONResponse({CLASS[collection]: held[sid]})
            if request.method == "DELETE":
                if sid not in held:
                    return status_info(404, "unknownobject", f"No {CLASS[collection]} {sid}")
                user = self._referrer(collection, sid)
                if user:
                    return status_info(400, "invalid_data", f"{sid} is referred to by {user}")
                del held[sid]
                return Response(status_code=204)
            try:
                body = await request.json()
            except ValueError:
                return status_info(400, "invalid_data", "The body is not JSON")
            record = body.get(CLASS[collection]) if isinstance(body, dict) else None
            if not isinstance(record, dict):
                return status_info(400, "invalid_data", f"The body has no {CLASS[collection]}")
            problem = self._invalid(collection, sid, record)
            if problem:
                return status_info(400, "invalid_data", problem)
            made = sid not in held
            held[sid] = record
            return JSONResponse({CLASS[collection]: record}, 201 if made else 200)

    def _invalid(self, collection: str, sid: str, record: dict[str, Any]) -> str | None:
        cls = CLASS[collection]
        if sid in self.refuse:
            return f"{cls} {sid} is refused by this service"
        if record.get("sourcedId") != sid:
            return "sourcedId differs from the path"
        if record.get("status") not in ("active", "tobedeleted"):
            return "status must be active or tobedeleted"
        if not DATETIME.match(str(record.get("dateLastModified", ""))):
            return "dateLastModified must be a UTC datetime"
        for field in REQUIRED[cls]:
            if record.get(field) in (None, "", []):
                return f"{field} is required"
        for (c, field), allowed in VOCAB.items():
            if c == cls and field in record and record[field] not in allowed:
                return f"{field} {record[field]!r} is not in the vocabulary"
        for field in ("startDate", "endDate", "beginDate"):
            if field in record and not DATE.match(str(record[field])):
                return f"{field} must be YYYY-MM-DD"
        if cls == "user":
            if not isinstance(record["enabledUser"], bool):
                return "enabledUser must be a boolean"
            for role in record["roles"]:
                if role.get("roleType") not in ROLE_TYPES or role.get("role") not in ROLES:
                    return "a role's roleType or role is not in the vocabulary"
                if self._dangling(role.get("org"), "orgs"):
                    return "a role's org is not known"
        for (c, field), target in REFS.items():
            if c == cls and field in record:
                for ref in _refs(record[field]):
                    if problem := self._dangling(ref, target):
                        return f"{field}: {problem}"
        return None

    def _dangling(self, ref: Any, target: str) -> str | None:
        if not isinstance(ref, dict) or not {"href", "sourcedId", "type"} <= set(ref):
            return "a GUIDRef needs href, sourcedId and type"
        if ref["type"] != CLASS[target]:
            return f"type {ref['type']!r} should be {CLASS[target]!r}"
        if ref["sourcedId"] not in self.records[target]:
            return f"{CLASS[target]} {ref['sourcedId']} is not known"
        return None

    def _referrer(self, collection: str, sid: str) -> str | None:
        """A record that refers to ``collection``/``sid``, if any."""
        for (cls, field), target in REFS.items():
            if target != collection:
                continue
            owner = next(c for c, k in CLASS.items() if k == cls)
            for other_id, other in self.records[owner].items():
                if any(isinstance(r, dict) and r.get("sourcedId") == sid
                       for r in _refs(other.get(field))):  # fmt: skip
                    return f"{cls} {other_id}"
        return None
