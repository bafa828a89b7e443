"""The console's refusals, each mapped to one HTTP status by the API and the pages."""

from __future__ import annotations

from belltower.api import FieldError
from belltower.errors import BelltowerError


class FieldErrors(BelltowerError):
    """Input refused field by field (HTTP 422); nothing was written."""

    code = "invalid"

    def __init__(self, errors: list[FieldError], message: str | None = None) -> None:
        super().__init__(message or "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class Unauthenticated(BelltowerError):
    """No valid session or token (HTTP 401)."""

    code = "unauthenticated"


class Denied(BelltowerError):
    """Authenticated, but the role may not do this (HTTP 403); ``errors`` names refused fields."""

    code = "forbidden"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class Throttled(BelltowerError):
    """Too many tries from this address or for this account (HTTP 429 with Retry-After)."""

    code = "throttled"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class BadQuery(FieldErrors):
    """A list's query parameters refused (HTTP 400): an unknown sort, a cursor that is not one,
    a limit out of bounds. Each error names the parameter and what it accepts."""

    code = "bad_request"
