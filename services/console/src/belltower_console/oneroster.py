"""The OneRoster 1.2 provider: Belltower answers the 1EdTech Rostering Service REST/JSON
Binding 1.2's reads, so an LMS can pull the roster.

``GET /ims/oneroster/rostering/v1p2/{orgs,schools,academicSessions,terms,courses,classes,users,
students,teachers,enrollments}``, ``/{sourcedId}`` of each, and ``/classes/{sourcedId}/students``
and ``/teachers``. Collections come as ``{"users": [...]}``, one record as ``{"user": {...}}``
(a view as the class it is a view of: ``schools`` as ``orgs``, ``terms`` as
``academicSessions``, ``students`` and ``teachers`` as ``users``), paged with ``limit`` (default
100, at most 1,000) and ``offset``, with ``X-Total-Count`` and an RFC 8288 ``Link`` header
(``first``, ``prev``, ``next``, ``last``), and ``filter``, ``sort``/``orderBy`` and ``fields``
as the integration worker reads them (:mod:`belltower_integration.oneroster.provider`, over
NATS: ``integration.oneroster.read``; the console does not read the SIS). Refusals are the
binding's ``imsx_StatusInfo``: 400 with codeMinor ``invalid_filter_field``,
``invalid_selection_field``, ``invalid_sort_field`` or ``invalid_data``; 401
``unauthorisedrequest``; 403 ``forbidden``; 404 ``unknownobject``; 429 ``server_busy``; 5xx
``internal_server_error``.

Authorization is OAuth 2 client credentials (1EdTech Security Framework 1.1):
``POST /ims/oneroster/token`` with HTTP basic auth (or ``client_id``/``client_secret`` in the
form), ``grant_type=client_credentials`` and ``scope``. A client is an API token named
``oneroster: ...`` (:data:`.store.ONEROSTER_CLIENT`), issued by an admin like any token: the
token's id is the client id, its secret the client secret. The access token is
``ora.<payload>.<signature>``: the client, the scopes granted and the expiry, signed with HMAC-SHA256
under the client secret's stored hash, so it needs no table of its own and dies with the client
(revoked, expired, its user disabled). Reads need the scope ``roster-core.readonly`` or
``roster.readonly``. Each issue is audited (``oneroster.token``); failed client logins are
throttled like console logins.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from belltower import operations as ops
from belltower.errors import BelltowerError, InvalidInput, NotFound, Unavailable
from belltower.roster import ROSTER_LIMIT_MAX, RosterQuery

from . import throttle
from .actions import Console
from .errors import Denied, FieldErrors, Throttled, Unauthenticated
from .http import bearer_of, client_of, console_of, over_tls, same_secret
from .store import digest

log = logging.getLogger(__name__)

PREFIX = "/ims/oneroster"
ROSTERING = f"{PREFIX}/rostering/v1p2"
TOKEN_PATH = f"{PREFIX}/token"
SCOPE_BASE = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
CORE = SCOPE_BASE + "roster-core.readonly"
ROSTER = SCOPE_BASE + "roster.readonly"
DEMOGRAPHICS = SCOPE_BASE + "roster-demographics.readonly"
SCOPES = (CORE, ROSTER, DEMOGRAPHICS)
"""The rostering binding's scopes a client may be granted; the endpoints here need CORE or
ROSTER (DEMOGRAPHICS is for the demographics endpoints, which are not built)."""
READ_SCOPES = frozenset({CORE, ROSTER})
ACCESS_TTL_S = 3600
TOKEN_PREFIX = "ora"
DEFAULT_LIMIT = 100

CLASS_OF = {
    "orgs": "org", "schools": "org", "academicSessions": "academicSession",
    "terms": "academicSession", "courses": "course", "classes": "class", "users": "user",
    "students": "user", "teachers": "user", "enrollments": "enrollment",
}  # fmt: skip
ENVELOPE = {
    "orgs": "orgs", "schools": "orgs", "academicSessions": "academicSessions",
    "terms": "academicSessions", "courses": "courses", "classes": "classes", "users": "users",
    "students": "users", "teachers": "users", "enrollments": "enrollments",
}  # fmt: skip
MINOR = {
    "filter": "invalid_filter_field",
    "fields": "invalid_selection_field",
    "sort": "invalid_sort_field",
    "orderBy": "invalid_sort_field",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


# -- the binding's refusals -----------------------------------------------------------------


def status_info(
    status: int, minor: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The binding's ``imsx_StatusInfo``: codeMajor failure, severity error, one codeMinor."""
    body = {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": minor}
            ]
        },
    }
    return JSONResponse(body, status_code=status, headers=headers)


def refusal(exc: Exception) -> JSONResponse:
    """Any failure on a OneRoster path as ``imsx_StatusInfo``; never internals."""
    if isinstance(exc, FieldErrors):
        first = exc.errors[0] if exc.errors else None
        field = first.field if first else "query"
        return status_info(400, MINOR.get(field, "invalid_data"), exc.message)
    if isinstance(exc, InvalidInput):
        return status_info(400, MINOR.get(exc.field, "invalid_data"), exc.message)
    if isinstance(exc, NotFound):
        return status_info(404, "unknownobject", exc.message)
    if isinstance(exc, Unauthenticated):
        return status_info(401, "unauthorisedrequest", exc.message, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Denied):
        return status_info(403, "forbidden", exc.message)
    if isinstance(exc, Throttled):
        return status_info(429, "server_busy", exc.message, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, Unavailable):
        return status_info(503, "server_busy", exc.message, {"Retry-After": "5"})
    if isinstance(exc, StarletteHTTPException):
        minor = "unknownobject" if exc.status_code == 404 else "invalid_data"
        return status_info(exc.status_code, minor, str(exc.detail))
    if isinstance(exc, BelltowerError):
        log.warning(
            "upstream failure", extra={"action": "oneroster.upstream", "error": exc.message}
        )
        return status_info(502, "internal_server_error", "a Belltower service failed; see its log")
    log.error("unexpected error", exc_info=exc, extra={"action": "oneroster.error"})
    return status_info(500, "internal_server_error", "the console failed; its log has the details")


def answered_in_binding(handler: Handler) -> Handler:
    """An app's exception handler that leaves failures on the OneRoster paths to
    :func:`refusal` (the binding's imsx_StatusInfo, not a problem document or a page)."""

    @functools.wraps(handler)
    async def handle(request: Request, exc: Any) -> Any:
        if request.url.path.startswith(PREFIX + "/"):
            return refusal(exc)
        return await handler(request, exc)

    return handle  # type: ignore[return-value]


# -- access tokens ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, f"{TOKEN_PREFIX}.{payload}".encode(), hashlib.sha256).digest())


def access_token(client_id: str, secret_hash: bytes, scopes: list[str], expires_at: int) -> str:
    payload = _b64(json.dumps({"c": client_id, "s": scopes, "e": expires_at}).encode())
    return f"{TOKEN_PREFIX}.{payload}.{_signature(secret_hash, payload)}"


def _claims(token: str) -> dict[str, Any] | None:
    """The unverified claims of an access token's shape, or None."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("c"), str):
        return None
    if not isinstance(claims.get("e"), int) or not isinstance(claims.get("s"), list):
        return None
    return claims


async def _scopes(console: Console, token: str) -> list[str] | None:
    """The scopes of a valid, unexpired access token of a live client, else None."""
    claims = _claims(token)
    if claims is None or claims["e"] <= time.time():
        return None
    row = await console.store.oneroster_client(claims["c"])
    if row is None:
        return None
    _, payload, signature = token.split(".")
    if not same_secret(signature, _signature(bytes(row["secret_hash"]), payload)):
        return None
    return [str(s) for s in claims["s"]]


async def authorized(request: Request) -> list[str]:
    """The scopes of the request's valid access token; raises Unauthenticated or Denied."""
    given = bearer_of(request)
    console = console_of(request)
    scopes = await _scopes(console, given) if given else None
    if scopes is not None:
        if not READ_SCOPES & set(scopes):
            raise Denied(
                f"the access token's scope ({' '.join(scopes) or 'none'}) does not cover the "
                f"rostering reads: ask for {CORE} or {ROSTER}"
            )
        return scopes
    if given:
        await console.audit(
            None, client_of(request), "oneroster.auth", outcome="denied",
            detail=f"bad or expired access token for {request.url.path}",
        )  # fmt: skip
        raise Unauthenticated("the access token is wrong or expired: get one at " + TOKEN_PATH)
    raise Unauthenticated(
        f"send an access token as 'Authorization: Bearer ...' (OAuth 2 client credentials at "
        f"{TOKEN_PATH})"
    )


def oauth_error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    """RFC 6749 5.2."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **headers},
    )


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except ValueError:
        return None
    return (user, password) if sep else None


@router.post(TOKEN_PATH.removeprefix(PREFIX))
async def token(request: Request) -> Response:
    """OAuth 2 client credentials: an access token for a OneRoster client."""
    console, client = console_of(request), client_of(request)
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return oauth_error(
            400, "invalid_request", "send the form as application/x-www-form-urlencoded"
        )
    try:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return oauth_error(400, "invalid_request", "the form cannot be read")
    credentials = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
    client_id, secret = credentials
    if not client_id or not secret:
        return oauth_error(
            401, "invalid_client", "authenticate the client (HTTP basic auth)",
            **{"WWW-Authenticate": 'Basic realm="oneroster"'},
        )  # fmt: skip
    try:
        await throttle.check(console, client_id[:64], client, "oneroster.token")
    except Throttled as exc:
        return oauth_error(
            429, "slow_down", exc.message, **{"Retry-After": str(exc.retry_after)}
        )  # fmt: skip
    row = await console.store.oneroster_client(client_id)
    if row is None or not hmac.compare_digest(digest(secret), bytes(row["secret_hash"])):
        await console.audit(
            None, client, "oneroster.token", actor=client_id[:64], outcome="failed",
            detail="wrong, revoked or expired OneRoster client",
        )  # fmt: skip
        return oauth_error(
            401, "invalid_client", "wrong client id or secret, or the client is revoked",
            **{"WWW-Authenticate": 'Basic realm="oneroster"'},
        )  # fmt: skip
    if form.get("grant_type") != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    asked = form.get("scope", "").split()
    unknown = [s for s in asked if s not in SCOPES]
    if unknown:
        return oauth_error(
            400, "invalid_scope", f"not a scope of this service: {' '.join(unknown)[:300]}; "
            f"ask for {' '.join(SCOPES)}",
        )  # fmt: skip
    scopes = list(dict.fromkeys(asked)) or [CORE, ROSTER]
    expires = int(time.time()) + ACCESS_TTL_S
    issued = access_token(row["id"], bytes(row["secret_hash"]), scopes, expires)
    await console.store.oneroster_client_used(row["id"])
    await console.audit(
        None, client, "oneroster.token", actor=row["username"], target=row["id"],
        detail=f"access token for {row['name']} ({' '.join(scopes)}), {ACCESS_TTL_S} s",
    )  # fmt: skip
    return JSONResponse(
        {"access_token": issued, "token_type": "bearer", "expires_in": ACCESS_TTL_S,
         "scope": " ".join(scopes)},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )  # fmt: skip


# -- the reads --------------------------------------------------------------------------------


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidInput(name, f"{raw[:40]!r} is out of range", f"an integer {low} to {high}")
    return int(raw)


def _query(request: Request, collection: str, **where: Any) -> RosterQuery:
    q = request.query_params
    order = q.get("orderBy", "asc")
    if order not in ("asc", "desc"):
        raise InvalidInput("orderBy", f"{order[:40]!r} is not an order", "asc or desc")
    fields = [f.strip() for f in q["fields"].split(",")] if "fields" in q else []
    if len(fields) > 100:
        raise InvalidInput("fields", "names more than 100 fields", "at most 100 field names")
    filter_ = q.get("filter", "")
    if len(filter_) > 2_000:
        raise InvalidInput("filter", "is longer than 2,000 characters", "a shorter filter")
    sort = q.get("sort", "")
    if len(sort) > 100:
        raise InvalidInput("sort", "is longer than 100 characters", "a field name")
    return RosterQuery(
        collection=collection,  # type: ignore[arg-type]
        filter=filter_, sort=sort, order_by=order, fields=fields,  # type: ignore[arg-type]
        offset=_int(request, "offset", 0, 0, 1_000_000_000),
        limit=_int(request, "limit", DEFAULT_LIMIT, 1, ROSTER_LIMIT_MAX),
        **where,
    )  # fmt: skip


def _absolute(value: Any, base: str) -> Any:
    """GUIDRefs' ``href`` paths under this console's address."""
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, dict):
        out = {k: _absolute(v, base) for k, v in value.items()}
        href = out.get("href")
        if isinstance(href, str) and href.startswith(ROSTERING):
            out["href"] = base + href
        return out
    return value


def base_of(request: Request) -> str:
    scheme = "https" if over_tls(request) else request.url.scheme
    return f"{scheme}://{request.url.netloc}"


def _link(request: Request, offset: int, limit: int) -> str:
    params = dict(request.query_params)
    params |= {"offset": str(offset), "limit": str(limit)}
    return f"{base_of(request)}{request.url.path}?{urlencode(params, quote_via=quote)}"


def links(request: Request, offset: int, limit: int, total: int) -> str:
    last = max(0, (total - 1) // limit * limit)
    rels = [("first", 0)]
    if offset > 0:
        rels.append(("prev", max(0, offset - limit)))
    if offset + limit < total:
        rels.append(("next", offset + limit))
    rels.append(("last", last))
    return ", ".join(f'<{_link(request, at, limit)}>; rel="{rel}"' for rel, at in rels)


async def _collection(request: Request, collection: str, **where: Any) -> Response:
    await authorized(request)
    q = _query(request, collection, **where)
    api = console_of(request).api
    records: list[dict[str, Any]] = []
    total = 0
    while True:
        asked = msgspec.structs.replace(
            q, offset=q.offset + len(records), limit=q.limit - len(records)
        )
        page = await api.call(ops.ONEROSTER_READ, asked)
        records += page.records
        total = page.total
        if not page.records or len(records) >= q.limit or asked.offset + len(page.records) >= total:
            break
    base = base_of(request)
    body = {ENVELOPE[collection]: [_absolute(r, base) for r in records]}
    headers = {"X-Total-Count": str(total), "Link": links(request, q.offset, q.limit, total)}
    return JSONResponse(body, headers=headers)


async def _one(request: Request, collection: str, sourced_id: str) -> Response:
    await authorized(request)
    q = _query(request, collection, sourced_id=sourced_id)
    page = await console_of(request).api.call(ops.ONEROSTER_READ, q)
    if not page.records:
        raise NotFound(f"no {collection} record with sourcedId {sourced_id!r}")
    return JSONResponse({CLASS_OF[collection]: _absolute(page.records[0], base_of(request))})


@router.get("/rostering/v1p2/classes/{class_id}/students")
async def class_students(request: Request, class_id: str) -> Response:
    try:
        return await _collection(request, "students", class_id=class_id)
    except BelltowerError as exc:
        return refusal(exc)


@router.get("/rostering/v1p2/classes/{class_id}/teachers")
async def class_teachers(request: Request, class_id: str) -> Response:
    try:
        return await _collection(request, "teachers", class_id=class_id)
    except BelltowerError as exc:
        return refusal(exc)


@router.get("/rostering/v1p2/{collection}")
async def collection(request: Request, collection: str) -> Response:
    try:
        if collection not in ENVELOPE:
            raise NotFound(f"no collection {collection[:100]!r} in this service")
        return await _collection(request, collection)
    except BelltowerError as exc:
        return refusal(exc)


@router.get("/rostering/v1p2/{collection}/{sourced_id}")
async def one(request: Request, collection: str, sourced_id: str) -> Response:
    try:
        if collection not in ENVELOPE:
            raise NotFound(f"no collection {collection[:100]!r} in this service")
        return await _one(request, collection, sourced_id)
    except BelltowerError as exc:
        return refusal(exc)
