"""``belltower jobs backfill``, ``jobs decide`` and ``jobs decisions``: run a past range of a
job's schedule, and answer the catch-up decisions of jobs whose policy is ``ask``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from .. import backfill as bf
from .. import decisions as dc
from ..api import Job
from ..errors import BelltowerError
from ..schedule import parse_datetime
from .options import JsonFlag, ProfileOpt
from .output import fail, print_json, table, timestamp
from .remote import Api, call, seg


def jobs_backfill(
    job_id: str,
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="The first scheduled instant to run, ISO 8601 (without an offset: in the "
            "job's time zone).",
        ),
    ],
    to: Annotated[str, typer.Option(help="Up to this instant, not included (at most now).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the occurrences; run nothing.")
    ] = False,
    max_: Annotated[
        int,
        typer.Option(
            "--max",
            help=f"Refuse a range with more occurrences than this (1 to {bf.MAX_LIMIT:,}).",
        ),
    ] = bf.DEFAULT_MAX,
    priority: Annotated[
        int | None,
        typer.Option(help="Priority of the backfilled runs (default: the job's)."),
    ] = None,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Run the occurrences the job's schedule had in a past range (calendar, window and DST
    policy applied), each once: those that already ran are not run again.

    Recorded with trigger backfill and your name; --dry-run shows them first."""

    try:  # the form and the bounds before asking anything (read in UTC, for now)
        bf.check(
            parse_datetime(from_, "UTC", "from"), parse_datetime(to, "UTC", "to"), max_,
            priority, datetime.now(UTC),
        )  # fmt: skip
    except BelltowerError as exc:
        fail(exc)

    def go(api: Api) -> bf.BackfillResult:
        tz = api.get(f"/jobs/{seg(job_id)}", Job).schedule.tz
        since = parse_datetime(from_, tz, "from")
        until = parse_datetime(to, tz, "to")
        bf.check(since, until, max_, priority, datetime.now(UTC))
        body = {
            "from": since.isoformat(), "to": until.isoformat(), "dry_run": dry_run,
            "max": max_, "priority": priority,
        }  # fmt: skip
        return api.send("POST", f"/jobs/{seg(job_id)}/backfill", bf.BackfillResult, body=body)

    result = call(profile, go)
    if json_out:
        print_json(result)
        return
    table(
        ["scheduled for", "what happens"],
        [
            [
                timestamp(o.scheduled_for),
                ("runs" + (f" (it was {o.was})" if o.was else ""))
                if o.action == "run"
                else f"not run again: {o.was}",
            ]
            for o in result.occurrences
        ],
    )
    verb = "would run" if result.dry_run else "dispatched"
    typer.echo(
        f"{result.title}: {result.to_run} {verb}, {result.already} ran already "
        f"(priority {result.priority})"
    )


def jobs_decide(
    job_id: str,
    choice: Annotated[str, typer.Argument(help=dc.CHOICE_FORM)],
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Answer a catch-up decision (catch-up policy ask): run the latest missed run, all of
    them, or none. Asked twice, the second answer is refused (exit 4): nothing runs twice."""
    try:
        picked = dc.check_choice(choice)
    except BelltowerError as exc:
        fail(exc)
    result = call(
        profile,
        lambda api: api.send(
            "POST", f"/jobs/{seg(job_id)}/decision", dc.DecisionResult, body={"choice": picked}
        ),
    )
    if json_out:
        print_json(result)
        return
    ran = ", ".join(timestamp(t) for t in result.run_for[:5]) + (
        f" and {len(result.run_for) - 5} more" if len(result.run_for) > 5 else ""
    )
    typer.echo(
        f"decided {result.choice}: {len(result.run)} run(s) dispatched"
        + (f" ({ran})" if ran else "")
        + f", {result.skipped} skipped"
    )


def jobs_decisions(json_out: JsonFlag = False, profile: ProfileOpt = None) -> None:
    """The jobs whose missed runs await a decision (`belltower jobs decide`)."""
    found = call(profile, lambda api: api.get("/decisions", list[dc.PendingDecision]))
    if json_out:
        print_json(found)
        return
    if not found:
        typer.echo("no missed runs await a decision")
        return
    table(
        ["job", "missed", "expires"],
        [[d.job_id, dc.sentence(d), timestamp(d.expires_at)] for d in found],
    )
