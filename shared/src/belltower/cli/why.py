"""``belltower jobs why``: every occurrence of a job and what became of it, with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from ..api import LedgerEntry, WhyResult
from ..errors import BelltowerError
from ..schedule import parse_datetime
from .options import JsonFlag, ProfileOpt
from .output import fail, print_json, table, timestamp
from .remote import call, seg


def _what_happened(e: LedgerEntry) -> str:
    """One occurrence's fate in a sentence a registrar can read."""
    if e.trigger == "manual":
        origin = "run now" + (f" by {e.requested_by}" if e.requested_by else "")
        origin += f" from {e.requested_from}" if e.requested_from else ""
        origin += ": "
    elif e.trigger == "backfill":
        origin = "backfill" + (f" by {e.requested_by}" if e.requested_by else "") + ": "
    elif e.trigger == "chained":
        origin = f"chained after occurrence {e.chained_from}: "
    else:
        origin = ""
    if e.state == "dispatched":
        if e.run_status is None:
            outcome = "no result yet"
        elif e.run_status == "running":
            outcome = "running"
        else:
            outcome = e.run_status + (f" ({e.run_error})" if e.run_error else "")
        if e.recovery_attempts:
            outcome += f"; published again {e.recovery_attempts}x (the broker had lost it)"
        if e.cause == "concurrency" and e.reason:
            outcome += f"; {e.reason}"  # "waited 12.0s for canvas:... (concurrency limit 1)"
        return f"{origin}ran: {outcome}; run {e.run_id}, dispatched {timestamp(e.dispatched_at)}"
    if e.state == "pending":
        return f"{origin}being dispatched (run {e.run_id})"
    if e.state == "delayed":
        return f"{origin}waits for its delay, runs at {timestamp(e.scheduled_for)}"
    return origin + (e.reason or e.state)


def _why_rows(entries: Sequence[LedgerEntry]) -> list[list[str]]:
    """One row per occurrence, except that a run of occurrences with the same fate and reason
    (a long pause, a catch-up) is one row: "FIRST … LAST (N)"."""
    rows: list[list[str]] = []
    group: list[LedgerEntry] = []

    def flush() -> None:
        if not group:
            return
        text = _what_happened(group[0])
        when = timestamp(group[0].scheduled_for)
        if len(group) > 1:  # newest first
            when = f"{timestamp(group[-1].scheduled_for)} … {when} ({len(group)})"
        rows.append([when, group[0].trigger, text])
        group.clear()

    for e in entries:
        if group and not (
            e.state not in ("dispatched", "pending")
            and (e.state, e.reason, e.trigger)
            == (group[0].state, group[0].reason, group[0].trigger)
        ):
            flush()
        group.append(e)
    flush()
    return rows


def jobs_why(
    job_id: str,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Occurrences scheduled at or after this ISO date-time."),
    ] = None,
    to: Annotated[
        str | None, typer.Option(help="Occurrences scheduled before this ISO date-time.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many occurrences, newest first.")] = 200,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Why did (or didn't) a job run? Every occurrence and what became of it, with the reason."""
    try:
        query: dict[str, Any] = {"limit": limit}
        if from_:
            query["from_"] = parse_datetime(from_, field="from").isoformat()
        if to:
            query["to"] = parse_datetime(to, field="to").isoformat()
    except BelltowerError as exc:
        fail(exc)

    # The console fills in from history the outcomes the ledger has not heard of yet.
    why = call(profile, lambda api: api.get(f"/jobs/{seg(job_id)}/why", WhyResult, **query))
    if json_out:
        print_json(why)
        return
    span = f" from {timestamp(why.since)}" if why.since else ""
    span += f" to {timestamp(why.until)}" if why.until else ""
    typer.echo(f"{why.title} ({why.job_id}){span}")
    typer.echo(f"  schedule: {why.schedule_text}")
    open_pause = next((p for p in why.pauses if p.resumed_at is None), None)
    if why.paused:
        by = f" by {open_pause.paused_by}" if open_pause and open_pause.paused_by else ""
        by += f" from {open_pause.paused_from}" if open_pause and open_pause.paused_from else ""
        at = f" at {timestamp(open_pause.paused_at)}" if open_pause else ""
        typer.echo(f"  state:    PAUSED{by}{at}: it does not run until resumed")
        if open_pause and open_pause.note:
            typer.echo(f"  why:      {open_pause.note}")
    elif why.on_demand:
        typer.echo("  state:    active, on demand: it runs when started by hand or chained")
    elif why.next_run_at is None:
        end = f" (end {timestamp(why.schedule_end)})" if why.schedule_end else ""
        typer.echo(f"  state:    no further occurrence: the schedule has ended{end}")
    else:
        typer.echo(f"  state:    active, next run {timestamp(why.next_run_at)}")
    if not why.occurrences:
        typer.echo("No occurrence in this period.")
    else:
        table(["scheduled for", "trigger", "what happened"], _why_rows(why.occurrences))
    for p in why.pauses:
        resumed = (
            f", resumed at {timestamp(p.resumed_at)} by {p.resumed_by or 'someone'}"
            + (f" from {p.resumed_from}" if p.resumed_from else "")
            if p.resumed_at
            else ", not resumed yet"
        )
        where = f" from {p.paused_from}" if p.paused_from else ""
        note = f" ({p.note})" if p.note else ""
        typer.echo(
            f"paused at {timestamp(p.paused_at)} by {p.paused_by or 'someone'}{where}{note}{resumed}"
        )
