"""What the API and the pages share: who is asking, from where, and how refusals are encoded."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from belltower.api import FieldError
from belltower.errors import BelltowerError, Conflict, InvalidInput, NotFound, Unavailable

from .actions import Console
from .errors import Denied, FieldErrors, Unauthenticated
from .store import Principal

SESSION_COOKIE = "belltower_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class MsgspecResponse(Response):
    """JSON of msgspec Structs, dataclass-free dicts and datetimes, as the management API has them."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def console_of(request: Request) -> Console:
    return request.app.state.console


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def bearer_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def principal_of(request: Request) -> Principal:
    """The caller, cached on the request; raises Unauthenticated."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    who = await console_of(request).principal(
        bearer_of(request),
        request.cookies.get(SESSION_COOKIE),
        client_of(request),
        request.url.path,
        request.method,
    )
    request.state.principal = who
    return who


async def check_csrf(request: Request, who: Principal, given: str | None) -> None:
    """A state-changing request made with a session cookie must carry the session's CSRF token."""
    if request.method in SAFE_METHODS or who.via != "session":
        return

    if not given or not who.csrf_token or not secrets.compare_digest(given, who.csrf_token):
        await console_of(request).audit(
            who,
            client_of(request),
            "auth.csrf",
            target=request.url.path,
            outcome="denied",
            detail=f"{request.method} without a valid CSRF token",
        )
        raise Denied(
            "missing or wrong CSRF token: reload the page and try again",
            [
                FieldError(
                    field="csrf_token",
                    message="missing or wrong",
                    accepted="the token of your session",
                )
            ],
        )


def status_and_errors(exc: Exception) -> tuple[int, str, list[FieldError]]:
    if isinstance(exc, FieldErrors):
        return 422, exc.message, exc.errors
    if isinstance(exc, InvalidInput):
        return (
            422,
            exc.message,
            [FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted)],
        )
    if isinstance(exc, Denied):
        return 403, exc.message, exc.errors
    if isinstance(exc, Unauthenticated):
        return 401, exc.message, []
    if isinstance(exc, NotFound):
        return 404, exc.message, []
    if isinstance(exc, Conflict):
        return 409, exc.message, []
    if isinstance(exc, Unavailable):
        return 503, exc.message, []
    if isinstance(exc, BelltowerError):
        return 502, exc.message, []
    return 500, f"internal error: {type(exc).__name__}", []


def api_error(exc: Exception) -> JSONResponse:
    status, message, errors = status_and_errors(exc)
    body: dict[str, Any] = {"detail": message}
    if errors:
        body["errors"] = [msgspec.to_builtins(e) for e in errors]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def validation_errors(exc: RequestValidationError) -> FieldErrors:
    """FastAPI's own refusals (query strings, bodies) in the console's field-error form."""
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append(
            FieldError(field=".".join(loc) or "body", message=str(err.get("msg", "is invalid")))
        )
    return FieldErrors(errors)
