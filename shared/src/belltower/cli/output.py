"""How the CLI answers: tables, key-value listings' timestamps, JSON, and errors as exit codes.

Exit codes: 0 done, 1 not found or the run failed, 2 invalid input, 3 a service is unreachable,
4 a conflict (e.g. a run of the job is still going), 5 not allowed (no API configured, no or a
refused API token, or the token's role may not do this)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

import msgspec
import typer

from ..errors import BelltowerError, ConfigurationError, Conflict, InvalidInput, Unavailable

EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_CONFLICT, EXIT_DENIED = 1, 2, 3, 4, 5


class NotAllowed(BelltowerError):
    """The API refused the caller: no token, a wrong, expired or revoked one (HTTP 401), or a
    role that may not do this (HTTP 403). The CLI's own; it never crosses the management API."""

    code = "not_allowed"


EXIT_CODES: tuple[tuple[type[BelltowerError], int], ...] = (
    (InvalidInput, EXIT_INVALID),
    (Unavailable, EXIT_UNAVAILABLE),
    (Conflict, EXIT_CONFLICT),
    (NotAllowed, EXIT_DENIED),
    (ConfigurationError, EXIT_DENIED),
)


def fail(exc: BelltowerError) -> NoReturn:
    code = next((c for cls, c in EXIT_CODES if isinstance(exc, cls)), EXIT_FAILED)
    typer.echo(f"error: {exc.message}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    builtins = msgspec.to_builtins(value, builtin_types=(datetime,))
    typer.echo(json.dumps(builtins, default=lambda d: d.isoformat(), indent=2, ensure_ascii=False))


def timestamp(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
