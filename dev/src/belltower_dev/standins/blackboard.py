"""A stand-in for Blackboard Learn's public REST API, built to its documented contract.

OAuth 2 client credentials at ``POST /learn/api/public/v1/oauth2/token`` (HTTP basic auth with
the application key and secret, ``grant_type=client_credentials``), then a bearer token on
every call. Users and courses by primary id (``_12_1``) or ``externalId:...``; ``POST`` makes
one (409 when its userName / courseId or externalId is taken), ``PATCH`` changes one (404 when
there is none); course memberships at ``courses/{courseId}/users/{userId}`` (``PUT`` makes,
409 when it exists; ``PATCH``; ``DELETE`` 204). Lists page with ``offset``/``limit`` and
``paging.nextPage``. Errors are ``{"status", "message"}``. ``throttle_first`` answers that many
calls 429 with ``Retry-After: 0``; ``fail_first`` that many 503; ``expire_tokens`` refuses the
first bearer token once, as an expired one.
"""

from __future__ import annotations

import base64
import itertools
import threading
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

API = "/learn/api/public/v1"
KINDS = {"users": ("userName", "name.given", "name.family"), "courses": ("courseId", "name")}
UNIQUE = {"users": ("userName", "externalId"), "courses": ("courseId", "externalId")}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status)


def _get(record: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None  # type: ignore[assignment]
    return record


def _merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class BlackboardStandIn(ThreadedServer):
    name = "Blackboard stand-in"

    def __init__(
        self, key: str = "bb-key", secret: str = "bb-secret", *, page_size: int = 100,
        throttle_first: int = 0, fail_first: int = 0, expire_tokens: bool = False,
    ) -> None:  # fmt: skip
        self.key, self.secret, self.page_size = key, secret, page_size
        self.throttle_first, self.fail_first, self.expire_tokens = (
            throttle_first,
            fail_first,
            expire_tokens,
        )
        self.records: dict[str, dict[str, dict[str, Any]]] = {"users": {}, "courses": {}}
        self.memberships: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.serve(Starlette(routes=[
            Route(f"{API}/oauth2/token", self._token, methods=["POST"]),
            Route(f"{API}/{{kind:str}}", self._collection, methods=["GET", "POST"]),
            Route(f"{API}/{{kind:str}}/{{ref:str}}", self._one, methods=["GET", "PATCH"]),
            Route(f"{API}/courses/{{course:str}}/users/{{user:str}}", self._membership,
                  methods=["GET", "PUT", "PATCH", "DELETE"]),
        ]))  # fmt: skip

    # -- what every call goes through --------------------------------------------------------

    def _fault(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        if self.fail_first > 0:
            self.fail_first -= 1
            return error(503, "Service Unavailable")
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return JSONResponse(
                {"status": 429, "message": "Too Many Requests"}, 429, headers={"Retry-After": "0"}
            )
        return None

    def _unauthorized(self, request: Request) -> Response | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return error(401, "Bearer token is invalid")
        if self.expire_tokens:
            self.expire_tokens = False
            self.tokens.discard(token)
            return error(401, "Bearer token has expired")
        return None

    async def _token(self, request: Request) -> Response:
        if (fault := self._fault(request)) is not None:
            return fault
        expected = "Basic " + base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Invalid client credentials"}, 401
            )
        if (await request.form()).get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = f"tok-{next(self._ids)}"
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 3599})

    def _find(self, kind: str, ref: str) -> dict[str, Any] | None:
        ref = unquote(ref)
        records = self.records[kind]
        if ref.startswith("externalId:"):
            return next((r for r in records.values() if r.get("externalId") == ref[11:]), None)
        if ref.startswith("userName:") or ref.startswith("courseId:"):
            field, value = ref.split(":", 1)
            return next((r for r in records.values() if r.get(field) == value), None)
        return records.get(ref)

    # -- users and courses -------------------------------------------------------------------

    async def _collection(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if (fault := self._fault(request) or self._unauthorized(request)) is not None:
            return fault
        if kind not in KINDS:
            return error(404, "Not Found")
        if request.method == "GET":
            offset = int(request.query_params.get("offset", "0"))
            limit = min(int(request.query_params.get("limit", str(self.page_size))), self.page_size)
            items = list(self.records[kind].values())
            page = items[offset : offset + limit]
            fields = [f for f in request.query_params.get("fields", "").split(",") if f]
            body: dict[str, Any] = {
                "results": [{f: r.get(f) for f in fields} if fields else r for r in page]
            }
            if offset + limit < len(items):
                extra = f"&fields={request.query_params['fields']}" if fields else ""
                body["paging"] = {
                    "nextPage": f"{API}/{kind}?offset={offset + limit}&limit={limit}{extra}"
                }
            return JSONResponse(body)
        record = await request.json()
        for field in KINDS[kind]:
            if not _get(record, field):
                return error(400, f"{field} is required")
        with self._lock:
            for field in UNIQUE[kind]:
                if record.get(field) and any(
                    r.get(field) == record[field] for r in self.records[kind].values()
                ):
                    return error(409, f"A {kind[:-1]} with {field} {record[field]} already exists")
            record["id"] = f"_{next(self._ids)}_1"
            self.records[kind][record["id"]] = record
        return JSONResponse(record, 201)

    async def _one(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if (fault := self._fault(request) or self._unauthorized(request)) is not None:
            return fault
        if kind not in KINDS:
            return error(404, "Not Found")
        record = self._find(kind, request.path_params["ref"])
        if record is None:
            return error(404, f"No {kind[:-1]} {unquote(request.path_params['ref'])}")
        if request.method == "PATCH":
            change = await request.json()
            for field in UNIQUE[kind]:
                value = change.get(field)
                if value and any(
                    r.get(field) == value and r is not record for r in self.records[kind].values()
                ):
                    return error(409, f"A {kind[:-1]} with {field} {value} already exists")
            _merge(record, change)
        return JSONResponse(record)

    # -- course memberships ------------------------------------------------------------------

    async def _membership(self, request: Request) -> Response:
        if (fault := self._fault(request) or self._unauthorized(request)) is not None:
            return fault
        course = self._find("courses", request.path_params["course"])
        user = self._find("users", request.path_params["user"])
        if course is None or user is None:
            return error(404, "Course or user not found")
        key = (course["id"], user["id"])
        existing = self.memberships.get(key)
        if request.method == "PUT":
            if existing is not None:
                return error(409, "The user is already enrolled in the course")
            body = await request.json()
            self.memberships[key] = {
                "userId": user["id"],
                "courseId": course["id"],
                "courseRoleId": "Student",
                **body,
            }
            return JSONResponse(self.memberships[key], 201)
        if existing is None:
            return error(404, "Membership not found")
        if request.method == "DELETE":
            del self.memberships[key]
            return Response(status_code=204)
        if request.method == "PATCH":
            _merge(existing, await request.json())
        return JSONResponse(existing)

    # -- what a test looks at ----------------------------------------------------------------

    def by_external(self, kind: str, external_id: str) -> dict[str, Any] | None:
        return self._find(kind, f"externalId:{external_id}")
