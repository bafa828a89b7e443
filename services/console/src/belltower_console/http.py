"""What the API and the pages share: who is asking, from where, and how refusals are encoded."""

from __future__ import annotations

import ipaddress
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from belltower.api import FieldError
from belltower.errors import (
    BelltowerError,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
)
from belltower.schedule import parse_datetime

from .actions import EARLIEST, LATEST, Console
from .errors import BadQuery, Denied, FieldErrors, Throttled, Unauthenticated
from .store import Principal

log = logging.getLogger(__name__)

SESSION_COOKIE = "belltower_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class MsgspecResponse(Response):
    """JSON of msgspec Structs, dataclass-free dicts and datetimes, as the management API has them."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


DATE_RANGE = "an ISO 8601 date-time from 1970-01-01 to 2199-12-31, e.g. 2026-09-01T08:00:00Z"


def when(value: str | None, name: str) -> datetime | None:
    """A date-time query parameter, within the range a school's history and schedules use."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value, field=name)
        in_utc = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(name, f"{value!r} is out of range", DATE_RANGE) from None
    if not EARLIEST <= in_utc < LATEST:
        raise InvalidInput(name, f"{value!r} is out of range", DATE_RANGE)
    return parsed


def console_of(request: Request) -> Console:
    return request.app.state.console


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(setting: str) -> tuple[Network, ...]:
    """BELLTOWER_CONSOLE_TRUSTED_PROXIES as networks; a plain address is a one-address network."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in setting.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ConfigurationError(
            f"BELLTOWER_CONSOLE_TRUSTED_PROXIES: {exc} (give addresses or CIDR networks, "
            "comma-separated)"
        ) from None


def _trusted(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not host or not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in networks)


def _proxies(request: Request) -> tuple[Network, ...]:
    return getattr(request.app.state, "trusted_proxies", ())


def client_of(request: Request) -> str | None:
    """The caller's address: the peer, or when the peer is a trusted proxy, the nearest address
    in X-Forwarded-For that is not itself a trusted proxy (a client cannot forge past them)."""
    peer = request.client.host if request.client else None
    networks = _proxies(request)
    if not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def over_tls(request: Request) -> bool:
    """Whether the browser reached the console over HTTPS: directly, or through a trusted proxy
    that says so in X-Forwarded-Proto."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else None
    if _trusted(peer, _proxies(request)):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def secure_cookies(request: Request) -> bool:
    """Mark cookies Secure when the setting says so or whenever the request came over TLS."""
    return bool(request.app.state.settings.console_secure_cookies) or over_tls(request)


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


def same_secret(given: str, expected: str) -> bool:
    """A constant-time comparison of two tokens that takes any text (``compare_digest`` raises
    on a non-ASCII ``str``, which a hostile form or header can send)."""
    return secrets.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
    )


async def check_csrf(request: Request, who: Principal, given: str | None) -> None:
    """A state-changing request made with a session cookie must carry the session's CSRF token."""
    if request.method in SAFE_METHODS or who.via != "session":
        return

    if not given or not who.csrf_token or not same_secret(given, who.csrf_token):
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


PROBLEM_TYPES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid", "Invalid input"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal", "Internal error"),
    502: ("upstream", "A Belltower service failed"),
    503: ("unavailable", "Service unavailable"),
}
PROBLEM_MEDIA = "application/problem+json"
INTERNAL_DETAIL = "the console failed on this request; its log has the details"
UPSTREAM_DETAIL = "a Belltower service failed on this request; its log has the details"


def status_and_errors(exc: Exception) -> tuple[int, str, list[FieldError]]:
    if isinstance(exc, BadQuery):
        return 400, exc.message, exc.errors
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
    if isinstance(exc, Throttled):
        return 429, exc.message, []
    if isinstance(exc, NotFound):
        return 404, exc.message, []
    if isinstance(exc, Conflict):
        return 409, exc.message, []
    if isinstance(exc, Unavailable):
        return 503, exc.message, []
    if isinstance(exc, BelltowerError):
        # Another service's unexpected failure: its text may carry a driver's message, which
        # stays in the logs, never in a reply.
        log.warning("upstream failure", extra={"action": "console.upstream", "error": exc.message})
        return 502, UPSTREAM_DETAIL, []
    return 500, INTERNAL_DETAIL, []


def problem(
    status: int,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem document: ``type``, ``title``, ``status``, ``detail`` and, for
    refused input, ``errors`` naming each field."""
    slug, title = PROBLEM_TYPES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": f"urn:belltower:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [msgspec.to_builtins(e) for e in errors]
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA)


def api_error(exc: Exception) -> JSONResponse:
    status, message, errors = status_and_errors(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, Throttled):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(status, message, errors, headers)


def validation_errors(exc: RequestValidationError) -> FieldErrors:
    """FastAPI's own refusals (query strings, bodies) in the console's field-error form."""
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        errors.append(
            FieldError(field=".".join(loc) or "body", message=str(err.get("msg", "is invalid")))
        )
    return FieldErrors(errors)
