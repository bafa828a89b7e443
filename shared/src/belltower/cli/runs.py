"""``belltower runs``: execution history, what ran, how it went, its output."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..api import RunRecord
from ..errors import BelltowerError
from ..holds import Release
from ..schedule import parse_datetime
from .listing import follow
from .options import JsonFlag, ProfileOpt
from .output import fail, print_json, table, timestamp
from .remote import call, seg

runs_app = typer.Typer(
    help="Execution history: what ran, how it went, its output.", no_args_is_help=True
)


@runs_app.command("list")
def runs_list(
    job: Annotated[str | None, typer.Option(help="Only runs of this job id.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="succeeded, failed, timed_out, dead_lettered, lost, abandoned, held or running."
        ),
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Scheduled at or after this ISO date-time.")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Scheduled before this ISO date-time.")] = None,
    search: Annotated[
        str, typer.Option("--search", "-q", help="Only runs with this text in title or summary.")
    ] = "",
    sort: Annotated[
        str,
        typer.Option(help="scheduled_for, finished_at or duration_ms; '-' first descends."),
    ] = "-scheduled_for",
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 100,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """List runs, newest first unless --sort says otherwise, page by page from the server."""
    try:
        query: dict[str, Any] = {"sort": sort, "q": search}
        if job:
            query["job_id"] = job
        if status:
            query["status"] = status
        if from_:
            query["from_"] = parse_datetime(from_, field="from").isoformat()
        if to:
            query["to"] = parse_datetime(to, field="to").isoformat()
    except BelltowerError as exc:
        fail(exc)
    runs = call(profile, lambda api: list(follow(api, "/runs", RunRecord, query, limit)))
    if json_out:
        print_json(runs)
        return
    if not runs:
        typer.echo("No runs match.")
        return
    table(
        ["run id", "scheduled for", "job", "status", "duration", "trigger", "summary"],
        [
            [
                r.run_id,
                timestamp(r.scheduled_for),
                r.job_title,
                r.status,
                f"{r.duration_ms} ms" if r.duration_ms is not None else "-",
                r.trigger
                if r.trigger not in ("manual", "backfill")
                else f"{r.trigger} by {r.requested_by or '?'}",
                r.summary[:60],
            ]
            for r in runs
        ],
    )


def _show_run(run: RunRecord) -> None:
    rows = [
        ("run id", run.run_id),
        ("occurrence", run.occurrence_id),
        ("job", f"{run.job_title} ({run.job_id})"),
        ("type", run.job_type),
        ("status", run.status),
        (
            "trigger",
            run.trigger
            + (f" by {run.requested_by}" if run.requested_by else "")
            + (f" from {run.requested_from}" if run.requested_from else ""),
        ),
        ("priority", str(run.priority)),
        ("scheduled for", timestamp(run.scheduled_for)),
        (
            "dispatched at",
            timestamp(run.dispatched_at)
            + (f" (waited {run.waited_s:.1f}s; `jobs why` says why)" if run.waited_s else ""),
        ),
        ("started at", timestamp(run.started_at)),
        ("finished at", timestamp(run.finished_at)),
        ("duration", f"{run.duration_ms} ms" if run.duration_ms is not None else "-"),
        ("attempt", str(run.attempt)),
        ("worker", run.worker or "-"),
    ]
    if run.progress_total or run.progress_message:
        rows.append(
            (
                "progress",
                f"{run.progress_done or 0}/{run.progress_total or '?'} {run.progress_message or ''}".strip(),
            )
        )
    if run.error:
        rows.append(("error", run.error))
    if run.trace_id:
        rows.append(("trace id", run.trace_id))
    if run.status == "held":
        rows.append(("release", f"belltower runs release {run.run_id}"))
    for key, value in rows:
        typer.echo(f"{key + ':':<15}{value}")
    typer.echo("output:")
    typer.echo("  " + (run.output_text.rstrip("\n") or "(none)").replace("\n", "\n  "))


@runs_app.command("show")
def runs_show(
    run_id: str,
    html: Annotated[
        bool, typer.Option("--html", help="Print the HTML output instead of the text.")
    ] = False,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Show one run with its output."""
    run = call(profile, lambda api: api.get(f"/runs/{seg(run_id)}", RunRecord))
    if json_out:
        print_json(run)
    elif html:
        typer.echo(run.output_html or "(this run has no HTML output)")
    else:
        _show_run(run)


@runs_app.command("release")
def runs_release(run_id: str, json_out: JsonFlag = False, profile: ProfileOpt = None) -> None:
    """Release a held run (editor or admin): one new run of its job applies the held change
    once; a run released already is refused (exit 1) naming the first release."""
    done = call(profile, lambda api: api.send("POST", f"/runs/{seg(run_id)}/release", Release))
    if json_out:
        print_json(done)
    elif done.release_run_id:
        typer.echo(f"released {run_id}: run {done.release_run_id} applies the held change")
    else:
        typer.echo(f"released {run_id}: a run of the job is going; its next run applies the change")
