"""``belltower jobs``: define, list, show, pause, resume, delete and run jobs now."""

from __future__ import annotations

import json
import time
from typing import Annotated

import msgspec
import typer

from ..api import Job, JobSpec, RunNowResult, RunRecord
from ..errors import BelltowerError, InvalidInput, NotFound, Unavailable
from ..schedule import OnDemand, ScheduleFlags, parse_every
from .jobstate import (
    AlertAfterOpt,
    ConcurrencyKeyOpt,
    ConcurrencyLimitOpt,
    MaxRunsOpt,
    PauseAfterOpt,
    jobs_pause,
    jobs_update,
    limit_fields,
    state_fields,
    state_rows,
)
from .listing import follow
from .options import JsonFlag, ProfileOpt, with_schedule_flags
from .output import EXIT_FAILED, fail, print_json, table, timestamp
from .parse import (
    parse_after,
    parse_backoff,
    parse_email_on,
    parse_emails,
    parse_keep,
    parse_params,
)
from .remote import Api, call, seg
from .runs import _show_run

jobs_app = typer.Typer(help="Define, list and control jobs.", no_args_is_help=True)


@jobs_app.command("create")
@with_schedule_flags()
def jobs_create(
    type_: Annotated[str, typer.Option("--type", help="Job type, see `belltower job-types`.")],
    title: Annotated[str, typer.Option(help="Title shown in lists and e-mails.")],
    schedule: ScheduleFlags,
    priority: Annotated[
        int, typer.Option(help="Higher runs first when due at the same time.")
    ] = 500,
    param: Annotated[
        list[str] | None, typer.Option(help="Job parameter KEY=VALUE; repeat for several.")
    ] = None,
    keep_history: Annotated[
        str | None, typer.Option(help="Keep execution history: days, week, month, year or forever.")
    ] = "30",
    timeout: Annotated[
        str | None, typer.Option(help="Stop a run after this long, e.g. 10m.")
    ] = None,
    paused: Annotated[bool, typer.Option(help="Create the job paused.")] = False,
    email: Annotated[
        list[str] | None,
        typer.Option(
            help="E-mail each run's result to this address; repeat, or separate with commas."
        ),
    ] = None,
    email_on: Annotated[
        str,
        typer.Option(
            help="When to e-mail results: always, failure, or default "
            "(BELLTOWER_RESULT_MAIL_ONLY_FAILURES decides)."
        ),
    ] = "default",
    catch_up: Annotated[
        str,
        typer.Option(
            help="After the scheduler was down: latest (run the latest missed once), all (run "
            "those within --catch-up-window, at most --catch-up-max), skip, or ask (they wait "
            "for `belltower jobs decide`). Every missed occurrence is recorded either way."
        ),
    ] = "latest",
    catch_up_window: Annotated[
        str, typer.Option(help="With --catch-up all: how late a missed occurrence may still run.")
    ] = "1d",
    catch_up_max: Annotated[
        int, typer.Option(help="With --catch-up all: most missed occurrences run.")
    ] = 10,
    overlap: Annotated[
        str,
        typer.Option(
            help="While the previous run is still going: skip, buffer (one waits) or allow."
        ),
    ] = "skip",
    retries: Annotated[
        int, typer.Option(help="Run again this many times after a failure or timeout.")
    ] = 0,
    retry_backoff: Annotated[
        str,
        typer.Option(help="Retry waits INITIAL,FACTOR,MAX, e.g. 10s,2,10m (10s, 20s, 40s, ...)."),
    ] = "10s,2,10m",
    max_deliveries: Annotated[
        int | None,
        typer.Option(
            help="Deliveries after which a run is recorded dead-lettered (default retries + 3)."
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            help="Chain: run after another job, JOB_ID[:succeeded|failed|finished][+DELAY], "
            "e.g. 3f2a...:succeeded+10m (default on succeeded, no delay)."
        ),
    ] = None,
    max_runs: MaxRunsOpt = None,
    alert_after_failures: AlertAfterOpt = None,
    pause_after_failures: PauseAfterOpt = None,
    concurrency_key: ConcurrencyKeyOpt = None,
    concurrency_limit: ConcurrencyLimitOpt = None,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Define a job and schedule it."""
    try:
        if catch_up not in ("latest", "all", "skip", "ask"):
            raise InvalidInput(
                "catch_up", f"{catch_up!r} is not a policy", "latest, all, skip or ask"
            )
        if overlap not in ("skip", "buffer", "allow"):
            raise InvalidInput("overlap", f"{overlap!r} is not a policy", "skip, buffer or allow")
        spec = JobSpec(
            type=type_,
            title=title,
            schedule=schedule.build(),
            priority=priority,
            params=parse_params(param or []),
            paused=paused,
            keep_history_days=parse_keep(keep_history),
            timeout_s=float(parse_every(timeout)) if timeout else None,
            result_emails=parse_emails(email or []),
            result_email_on=parse_email_on(email_on),
            catch_up=catch_up,  # type: ignore[arg-type]
            catch_up_window_s=float(parse_every(catch_up_window)),
            catch_up_max=catch_up_max,
            overlap=overlap,  # type: ignore[arg-type]
            retries=retries,
            retry_backoff=parse_backoff(retry_backoff),
            max_deliveries=max_deliveries,
            after=parse_after(after) if after else None,
        )
        state = state_fields(max_runs, alert_after_failures, pause_after_failures)
        state |= limit_fields(concurrency_key, concurrency_limit)
    except BelltowerError as exc:
        fail(exc)
    document = msgspec.to_builtins(spec) | state
    job = call(profile, lambda api: api.send("POST", "/jobs", Job, document))
    if json_out:
        print_json(job)
        return
    typer.echo(f"created job {job.id}")
    _show_job(job)


@jobs_app.command("list")
def jobs_list(
    sort: Annotated[
        str,
        typer.Option(
            help="title, type, schedule, next_run_at, priority or state; '-' first descends."
        ),
    ] = "-priority",
    search: Annotated[
        str, typer.Option("--search", "-q", help="Only jobs with this text in title, type or id.")
    ] = "",
    type_: Annotated[str, typer.Option("--type", help="Only jobs of this type.")] = "",
    state: Annotated[str, typer.Option(help="Only active, paused or not_installed jobs.")] = "",
    limit: Annotated[
        int | None, typer.Option(help="At most this many jobs (default every one).", min=1)
    ] = None,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """List jobs with their schedule and next run, sorted and searched by the server."""
    params = {"sort": sort, "q": search, "type": type_, "state": state, "last_run": False}
    jobs = call(
        profile,
        lambda api: [item.job for item in follow(api, "/jobs", _Listing, params, limit)],
    )
    if json_out:
        print_json(jobs)
        return
    if not jobs:
        typer.echo("No jobs yet. Create one with `belltower jobs create`.")
        return
    table(
        ["id", "title", "type", "schedule", "priority", "next run", "state"],
        [
            [
                j.id,
                j.title,
                j.type + ("" if j.type_installed else " (NOT INSTALLED)"),
                j.schedule_text,
                str(j.priority),
                _next_run_text(j),
                "paused" if j.paused else "active",
            ]
            for j in jobs
        ],
    )


class _Listing(msgspec.Struct):
    job: Job


def _show_job(job: Job) -> None:
    rows = [
        ("id", job.id),
        ("title", job.title),
        (
            "type",
            job.type
            + ("" if job.type_installed else "  (not installed: runs will fail until it is)"),
        ),
        ("pool", job.pool),
        ("schedule", job.schedule_text),
        ("start", timestamp(job.schedule.start)),
        ("end", timestamp(job.schedule.end)),
        ("priority", str(job.priority)),
        ("next run", _next_run_text(job)),
        ("state", "paused" if job.paused else "active"),
        (
            "keep history",
            "forever" if job.keep_history_days is None else f"{job.keep_history_days} days",
        ),
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s else "default"),
        ("result mail", _result_mail_text(job)),
        ("params", json.dumps(job.params) if job.params else "-"),
        ("catch-up", _catch_up_text(job)),
        ("overlap", job.overlap),
        ("retries", _retries_text(job)),
    ]
    if job.after is not None:
        delay = f" + {job.after.delay_s:g}s" if job.after.delay_s else ""
        rows.append(("after", f"job {job.after.job} {job.after.on}{delay}"))
    if job.paused and job.paused_by:
        rows.append(("paused by", f"{job.paused_by} at {timestamp(job.paused_at)}"))
    rows += state_rows(job)
    for key, value in rows:
        typer.echo(f"{key + ':':<14}{value}")


def _next_run_text(job: Job) -> str:
    if isinstance(job.schedule.rule, OnDemand) and job.next_run_at is None:
        return "on demand" + (" or after upstream" if job.after else "")
    return timestamp(job.next_run_at)


def _result_mail_text(job: Job) -> str:
    if not job.result_emails:
        return "-"
    when = {"always": "every run", "failure": "unsuccessful runs only"}.get(
        job.result_email_on, "per the global setting"
    )
    return f"{', '.join(job.result_emails)} ({when})"


def _catch_up_text(job: Job) -> str:
    if job.catch_up == "all":
        return f"all within {job.catch_up_window_s:g}s, at most {job.catch_up_max}"
    if job.catch_up == "ask":
        return "ask (missed runs wait for `belltower jobs decide`)"
    return job.catch_up


def _retries_text(job: Job) -> str:
    b = job.retry_backoff
    deliveries = job.max_deliveries if job.max_deliveries is not None else job.retries + 3
    backoff = f", backoff {b.initial_s:g}s x{b.factor:g} up to {b.max_s:g}s" if job.retries else ""
    return f"{job.retries}{backoff}; dead-lettered after {deliveries} deliveries"


@jobs_app.command("show")
def jobs_show(job_id: str, json_out: JsonFlag = False, profile: ProfileOpt = None) -> None:
    """Show one job."""
    job = call(profile, lambda api: api.get(f"/jobs/{seg(job_id)}", Job))
    print_json(job) if json_out else _show_job(job)


@jobs_app.command("delete")
def jobs_delete(job_id: str, profile: ProfileOpt = None) -> None:
    """Delete a job; its execution history stays until retention removes it."""
    call(profile, lambda api: api.request("DELETE", f"/jobs/{seg(job_id)}"))
    typer.echo(f"deleted job {job_id}")


jobs_app.command("pause")(jobs_pause)
jobs_app.command("update")(jobs_update)


@jobs_app.command("resume")
def jobs_resume(job_id: str, profile: ProfileOpt = None) -> None:
    """Schedule a paused job again, from now on; the occurrences of the pause are recorded skipped."""
    job = call(profile, lambda api: api.send("POST", f"/jobs/{seg(job_id)}/resume", Job))
    typer.echo(f"resumed {job.title} ({job.id}); next run {timestamp(job.next_run_at)}")


@jobs_app.command("run-now")
def jobs_run_now(
    job_id: str,
    wait: Annotated[
        bool, typer.Option(help="Wait for the run to finish and show how it went.")
    ] = False,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300.0,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Run now even while a run of the job is still going (overriding its overlap "
            "policy: skip refuses, buffer queues the run behind the one going) or its "
            "concurrency key has its limit of runs in flight.",
        ),
    ] = False,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Run a job once now, outside its schedule (recorded as a manual run).

    The job's overlap policy applies while a run of it is still going: skip refuses (exit 4,
    naming that run; --force runs anyway), buffer queues this run behind it, allow runs at once.
    A job whose concurrency key has its limit of runs in flight queues the run until one ends."""

    def go(api: Api) -> tuple[RunNowResult, RunRecord | None]:
        result = api.send("POST", f"/jobs/{seg(job_id)}/run", RunNowResult, force=force)
        if result.state == "waiting" and not json_out:
            typer.echo(f"queued run {result.run_id}: {result.note}", err=True)
        if not wait:
            return result, None
        deadline = time.monotonic() + wait_timeout
        while time.monotonic() < deadline:
            try:
                run = api.get(f"/runs/{seg(result.run_id)}", RunRecord)
                if run.finished_at is not None:
                    return result, run
            except NotFound:
                pass
            time.sleep(0.2)
        raise Unavailable(
            f"run {result.run_id} did not finish within {wait_timeout:g}s; see `belltower runs show {result.run_id}`"
        )

    result, run = call(profile, go)
    if json_out:
        print_json(run if run is not None else result)
    elif run is None:
        done = "queued" if result.state == "waiting" else "dispatched"
        typer.echo(f"{done} run {result.run_id} (occurrence {result.occurrence_id})")
        typer.echo(f"see it with: belltower runs show {result.run_id}")
    else:
        _show_run(run)
    if run is not None and run.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)
