"""How the CLI answers: tables, key-value listings' timestamps, JSON, and errors as exit codes.

Exit codes: 0 done, 1 not found or the run failed, 2 invalid input, 3 a service is unreachable,
4 a conflict (e.g. a run of the job is still going)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

import msgspec
import typer

from ..errors import BelltowerError, Conflict, InvalidInput, Unavailable

EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_CONFLICT = 1, 2, 3, 4


def fail(exc: BelltowerError) -> NoReturn:
    code = (
        EXIT_INVALID
        if isinstance(exc, InvalidInput)
        else EXIT_UNAVAILABLE
        if isinstance(exc, Unavailable)
        else EXIT_CONFLICT
        if isinstance(exc, Conflict)
        else EXIT_FAILED
    )
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
