"""``belltower jobs export`` and ``jobs import``: job definitions as YAML or JSON documents."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from .. import transfer
from ..api import ImportResult
from ..errors import BelltowerError, InvalidInput
from .import_progress import import_streamed
from .options import JsonFlag, ProfileOpt
from .output import EXIT_INVALID, fail, print_json
from .remote import Api, call


def jobs_export(
    format_: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    profile: ProfileOpt = None,
) -> None:
    """Export every job definition as YAML or JSON documents, for `belltower jobs import`."""
    if format_ not in transfer.FORMATS:
        fail(InvalidInput("format", f"{format_!r} is not an export format", "yaml or json"))
    text = call(profile, lambda api: api.request("GET", "/export", params={"format": format_}).text)
    if output:
        Path(output).write_text(text)
        count = len(transfer.load(text, format_))
        typer.echo(f"exported {count} job(s) to {output}", err=True)
    else:
        typer.echo(text, nl=False)


def jobs_import(
    file: Annotated[str, typer.Argument(help="A YAML or JSON export; - reads stdin.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Import job definitions: every document is checked first, then all are applied, or none."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        fail(InvalidInput("file", f"cannot read {file}: {exc.strerror}", "a readable file"))
    try:
        documents = transfer.load(text)
    except BelltowerError as exc:
        fail(exc)
    result = call(profile, lambda api: _import(api, documents, dry_run))
    if json_out:
        print_json(result)
    elif result.errors:
        typer.echo(f"nothing imported: {len(result.errors)} error(s)", err=True)
        for err in result.errors:
            accepted = f" (accepted: {err.accepted})" if err.accepted else ""
            typer.echo(
                f"  document {(err.index or 0) + 1}: {err.field}: {err.message}{accepted}", err=True
            )
    else:
        verb = "would" if dry_run else "did"
        for item in result.items:
            typer.echo(f"  document {item.index + 1}: {item.action:<9} {item.title} ({item.id})")
        counts = {a: sum(i.action == a for i in result.items) for a in ("create", "change")}
        typer.echo(
            f"{verb} create {counts['create']}, change {counts['change']}, "
            f"leave {len(result.items) - sum(counts.values())} unchanged"
        )
    if result.errors:
        raise typer.Exit(EXIT_INVALID)


def _import(api: Api, documents: list[object], dry_run: bool) -> ImportResult:
    """The documents as a JSON list; the console streams its progress (a bar on a terminal)
    and the result, refused documents included."""
    return import_streamed(api, msgspec.json.encode(documents), dry_run)
