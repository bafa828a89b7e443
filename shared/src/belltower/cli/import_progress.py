"""``belltower jobs import`` with a progress bar: the console streams its progress as NDJSON
while it checks and stages a large import batch by batch (a bar on a terminal, a line per tenth
otherwise), and the last line is the import's result."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx
import msgspec
import typer

from ..api import ImportResult
from ..errors import InternalError, Unavailable
from .remote import Api, error_of


class _Line(msgspec.Struct, kw_only=True):
    progress: dict[str, int] | None = None
    result: ImportResult | None = None
    problem: dict[str, Any] | None = None


_line = msgspec.json.Decoder(_Line)


class Report(Protocol):
    def __call__(self, done: int, total: int) -> None: ...


@contextmanager
def reporter(verb: str) -> Iterator[Report]:
    """A rich progress bar on a terminal; plain lines on stderr (each tenth) otherwise."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=None,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{verb} documents", total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    shown = [-1]

    def plain(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != shown[0]:
            shown[0] = tenth
            typer.echo(f"{verb} {done} of {total} documents", err=True)

    yield plain


def import_streamed(api: Api, body: bytes, dry_run: bool) -> ImportResult:
    """POST the documents asking for NDJSON; report progress, return the last line's result."""
    params = {"dry_run": str(dry_run).lower(), "format": "json"}
    headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
    try:
        with (
            api.http.stream("POST", "/import", params=params, content=body, headers=headers) as r,
            reporter("checking" if dry_run else "importing") as report,
        ):
            if not r.is_success:
                r.read()
                raise error_of(r, api.profile)
            for raw in r.iter_lines():
                if not raw.strip():
                    continue
                line = _line.decode(raw)
                if line.progress is not None:
                    report(line.progress["done"], line.progress["total"])
                elif line.result is not None:
                    return line.result
                elif line.problem is not None:
                    status = int(line.problem.get("status", 500))
                    raise error_of(httpx.Response(status, json=line.problem), api.profile)
    except httpx.TimeoutException:
        raise Unavailable(f"the Belltower API at {api.profile.url} stopped answering") from None
    except httpx.TransportError as exc:
        raise Unavailable(f"the Belltower API at {api.profile.url} went away: {exc}") from None
    raise InternalError("the import's reply ended without its result")
