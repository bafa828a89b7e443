"""``belltower``: define jobs and watch them run, from a shell.

Talks to the scheduler and history over NATS request-reply (``BELLTOWER_NATS_URL``).
Exit codes: 0 done, 1 not found or the run failed, 2 invalid input, 3 a service is unreachable.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from . import transfer
from .api import (
    ImportRequest,
    ImportResult,
    Job,
    JobSpec,
    JobTypeInfo,
    RunNowResult,
    RunRecord,
)
from .errors import BelltowerError, InvalidInput, NotFound, Unavailable
from .rpc import ApiClient
from .schedule import (
    Cron,
    Daily,
    Every,
    Once,
    Rule,
    Schedule,
    compile_schedule,
    parse_datetime,
    parse_every,
    parse_weekdays,
    zone,
)
from .settings import get_settings

T = TypeVar("T")

app = typer.Typer(
    name="belltower",
    help="Belltower: scheduled jobs for school information systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Define, list and control jobs.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Execution history: what ran, how it went, its output.", no_args_is_help=True
)
schedule_app = typer.Typer(help="Try schedules out without defining a job.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(runs_app, name="runs")
app.add_typer(schedule_app, name="schedule")

EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE = 1, 2, 3

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        envvar="BELLTOWER_NATS_URL",
        help="NATS server the services use.",
        show_envvar=True,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only.")]

# The schedule flags, shared by `jobs create` and `schedule preview`.
EveryOpt = Annotated[str | None, typer.Option(help="Run every interval: 30s, 5m, 1h30m, 1d.")]
CronOpt = Annotated[
    str | None, typer.Option(help="Cron expression, 5 fields or 6 with seconds first.")
]
DailyAtOpt = Annotated[
    str | None, typer.Option(help="Run daily at HH:MM (comma-separate several times).")
]
WeekdaysOpt = Annotated[
    str | None, typer.Option(help="With --daily-at: mon,tue,wed,thu,fri,sat,sun.")
]
OnceAtOpt = Annotated[str | None, typer.Option(help="Run once at an ISO date-time.")]
TzOpt = Annotated[
    str,
    typer.Option(
        help="IANA time zone the schedule is read in.",
        envvar="BELLTOWER_DEFAULT_TZ",
        show_envvar=True,
    ),
]
StartOpt = Annotated[str | None, typer.Option(help="No run before this ISO date-time.")]
EndOpt = Annotated[str | None, typer.Option(help="No run after this ISO date-time.")]


# -- plumbing ---------------------------------------------------------------------------------


def _call(nats_url: str | None, fn: Callable[[ApiClient], Awaitable[T]]) -> T:
    settings = get_settings()

    async def go() -> T:
        client = await ApiClient.connect(nats_url or settings.nats_url, settings.request_timeout_s)
        try:
            return await fn(client)
        finally:
            await client.close()

    try:
        return asyncio.run(go())
    except BelltowerError as exc:
        _fail(exc)


def _fail(exc: BelltowerError) -> None:
    code = (
        EXIT_INVALID
        if isinstance(exc, InvalidInput)
        else EXIT_UNAVAILABLE
        if isinstance(exc, Unavailable)
        else EXIT_FAILED
    )
    typer.echo(f"error: {exc.message}", err=True)
    raise typer.Exit(code)


def _json(value: Any) -> None:
    builtins = msgspec.to_builtins(value, builtin_types=(datetime,))
    typer.echo(json.dumps(builtins, default=lambda d: d.isoformat(), indent=2, ensure_ascii=False))


def _ts(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


@app.callback()
def _root() -> None:
    """Belltower: scheduled jobs for school information systems."""


# -- job types --------------------------------------------------------------------------------


@app.command("job-types")
def job_types(json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """List the job types the running workers can run, with their parameters."""
    types = _call(
        nats_url, lambda c: c.call("scheduler", "job_types.list", result_type=list[JobTypeInfo])
    )
    if json_out:
        _json(types)
        return
    if not types:
        typer.echo(
            "No job types: no worker has registered yet. Start the workers (e.g. `make dev`)."
        )
        return
    for info in types:
        typer.echo(f"{info.name}  [{info.pool}]  {info.title}")
        if info.description:
            typer.echo(f"    {info.description}")
        for name, spec in _params(info).items():
            typer.echo(f"    --param {name}=…  {spec}")


def _params(info: JobTypeInfo) -> dict[str, str]:
    schema = info.params_schema
    root = schema.get("$defs", {}).get(schema.get("$ref", "").removeprefix("#/$defs/"), schema)
    out = {}
    for name, prop in root.get("properties", {}).items():
        kinds = [p.get("type", "?") for p in prop.get("anyOf", [prop])]
        default = (
            f" (default {json.dumps(prop['default'])})" if "default" in prop else " (required)"
        )
        out[name] = "/".join(map(str, kinds)) + default
    return out


# -- jobs -------------------------------------------------------------------------------------


def build_schedule(
    every: str | None,
    cron: str | None,
    daily_at: str | None,
    weekdays: str | None,
    once_at: str | None,
    tz: str,
    start: str | None,
    end: str | None,
) -> Schedule:
    """The schedule the flags describe, validated; raises InvalidInput naming the flag."""
    given = [
        name
        for name, v in (
            ("every", every),
            ("cron", cron),
            ("daily_at", daily_at),
            ("once_at", once_at),
        )
        if v
    ]
    if len(given) != 1:
        raise InvalidInput(
            "schedule",
            "give exactly one of --every, --cron, --daily-at, --once-at"
            + (f" (got {', '.join(given)})" if given else ""),
            "--every 30s | --cron '0 7 * * mon-fri' | --daily-at 07:30 [--weekdays mon,wed] | --once-at 2026-09-01T07:30",
        )
    if weekdays and not daily_at:
        raise InvalidInput(
            "weekdays", "only goes with --daily-at", "--daily-at 07:30 --weekdays mon,wed,fri"
        )
    zone(tz)
    rule: Rule
    if every:
        rule = Every(seconds=parse_every(every))
    elif cron:
        rule = Cron(expr=cron)
    elif daily_at:
        times = [t.strip() for t in daily_at.split(",") if t.strip()]
        rule = Daily(times=times, weekdays=parse_weekdays(weekdays) if weekdays else None)
    else:
        rule = Once(at=parse_datetime(once_at or "", tz, field="once_at"))
    schedule = Schedule(
        rule=rule,
        tz=tz,
        start=parse_datetime(start, tz, field="start") if start else None,
        end=parse_datetime(end, tz, field="end") if end else None,
    )
    compile_schedule(schedule)
    return schedule


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                "param", f"{pair!r} is not KEY=VALUE", "KEY=VALUE, e.g. --param days=7"
            )
        params[key.strip()] = value
    return params


def parse_keep(text: str | None) -> int | None:
    if text is None or text.strip().lower() in {"forever", "never"}:
        return None
    named = {"week": 7, "month": 31, "year": 366}
    if text.strip().lower() in named:
        return named[text.strip().lower()]
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise InvalidInput(
            "keep_history",
            f"{text!r} is not a number of days",
            "days (e.g. 30), week, month, year or forever",
        )
    return days


@jobs_app.command("create")
def jobs_create(
    type_: Annotated[str, typer.Option("--type", help="Job type, see `belltower job-types`.")],
    title: Annotated[str, typer.Option(help="Title shown in lists and e-mails.")],
    every: EveryOpt = None,
    cron: CronOpt = None,
    daily_at: DailyAtOpt = None,
    weekdays: WeekdaysOpt = None,
    once_at: OnceAtOpt = None,
    tz: TzOpt = "UTC",
    priority: Annotated[
        int, typer.Option(help="Higher runs first when due at the same time.")
    ] = 500,
    start: StartOpt = None,
    end: EndOpt = None,
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
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Define a job and schedule it."""
    try:
        spec = JobSpec(
            type=type_,
            title=title,
            schedule=build_schedule(every, cron, daily_at, weekdays, once_at, tz, start, end),
            priority=priority,
            params=parse_params(param or []),
            paused=paused,
            keep_history_days=parse_keep(keep_history),
            timeout_s=float(parse_every(timeout)) if timeout else None,
        )
    except BelltowerError as exc:
        _fail(exc)
    job = _call(nats_url, lambda c: c.call("scheduler", "jobs.create", spec, result_type=Job))
    if json_out:
        _json(job)
        return
    typer.echo(f"created job {job.id}")
    _show_job(job)


@jobs_app.command("list")
def jobs_list(json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """List every job with its schedule and next run."""
    jobs = _call(nats_url, lambda c: c.call("scheduler", "jobs.list", result_type=list[Job]))
    if json_out:
        _json(jobs)
        return
    if not jobs:
        typer.echo("No jobs yet. Create one with `belltower jobs create`.")
        return
    _table(
        ["id", "title", "type", "schedule", "priority", "next run", "state"],
        [
            [
                j.id,
                j.title,
                j.type + ("" if j.type_installed else " (NOT INSTALLED)"),
                j.schedule_text,
                str(j.priority),
                _ts(j.next_run_at),
                "paused" if j.paused else "active",
            ]
            for j in jobs
        ],
    )


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
        ("start", _ts(job.schedule.start)),
        ("end", _ts(job.schedule.end)),
        ("priority", str(job.priority)),
        ("next run", _ts(job.next_run_at)),
        ("state", "paused" if job.paused else "active"),
        (
            "keep history",
            "forever" if job.keep_history_days is None else f"{job.keep_history_days} days",
        ),
        ("timeout", f"{job.timeout_s:g}s" if job.timeout_s else "default"),
        ("params", json.dumps(job.params) if job.params else "-"),
    ]
    for key, value in rows:
        typer.echo(f"{key + ':':<14}{value}")


@jobs_app.command("show")
def jobs_show(job_id: str, json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """Show one job."""
    job = _call(
        nats_url, lambda c: c.call("scheduler", "jobs.get", {"id": job_id}, result_type=Job)
    )
    _json(job) if json_out else _show_job(job)


@jobs_app.command("delete")
def jobs_delete(job_id: str, nats_url: NatsUrl = None) -> None:
    """Delete a job; its execution history stays until retention removes it."""
    _call(nats_url, lambda c: c.call("scheduler", "jobs.delete", {"id": job_id}))
    typer.echo(f"deleted job {job_id}")


@jobs_app.command("pause")
def jobs_pause(job_id: str, nats_url: NatsUrl = None) -> None:
    """Stop scheduling a job until it is resumed."""
    job = _call(
        nats_url, lambda c: c.call("scheduler", "jobs.pause", {"id": job_id}, result_type=Job)
    )
    typer.echo(f"paused {job.title} ({job.id})")


@jobs_app.command("resume")
def jobs_resume(job_id: str, nats_url: NatsUrl = None) -> None:
    """Schedule a paused job again, from now on."""
    job = _call(
        nats_url, lambda c: c.call("scheduler", "jobs.resume", {"id": job_id}, result_type=Job)
    )
    typer.echo(f"resumed {job.title} ({job.id}); next run {_ts(job.next_run_at)}")


@jobs_app.command("run-now")
def jobs_run_now(
    job_id: str,
    wait: Annotated[
        bool, typer.Option(help="Wait for the run to finish and show how it went.")
    ] = False,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300.0,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Run a job once now, outside its schedule (recorded as a manual run)."""

    async def go(client: ApiClient) -> tuple[RunNowResult, RunRecord | None]:
        result = await client.call(
            "scheduler",
            "jobs.run_now",
            {"id": job_id, "requested_by": _who()},
            result_type=RunNowResult,
        )
        if not wait:
            return result, None
        deadline = time.monotonic() + wait_timeout
        while time.monotonic() < deadline:
            try:
                run = await client.call(
                    "history", "runs.get", {"run_id": result.run_id}, result_type=RunRecord
                )
                if run.finished_at is not None:
                    return result, run
            except NotFound:
                pass
            await asyncio.sleep(0.2)
        raise Unavailable(
            f"run {result.run_id} did not finish within {wait_timeout:g}s; see `belltower runs show {result.run_id}`"
        )

    result, run = _call(nats_url, go)
    if json_out:
        _json(run if run is not None else result)
    elif run is None:
        typer.echo(f"dispatched run {result.run_id} (occurrence {result.occurrence_id})")
        typer.echo(f"see it with: belltower runs show {result.run_id}")
    else:
        _show_run(run)
    if run is not None and run.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


@jobs_app.command("export")
def jobs_export(
    format_: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Export every job definition as YAML or JSON documents, for `belltower jobs import`."""
    if format_ not in transfer.FORMATS:
        _fail(InvalidInput("format", f"{format_!r} is not an export format", "yaml or json"))
    jobs = _call(nats_url, lambda c: c.call("scheduler", "jobs.list", result_type=list[Job]))
    text = transfer.dump(transfer.documents_of(jobs), format_)  # type: ignore[arg-type]
    if output:
        Path(output).write_text(text)
        typer.echo(f"exported {len(jobs)} job(s) to {output}", err=True)
    else:
        typer.echo(text, nl=False)


@jobs_app.command("import")
def jobs_import(
    file: Annotated[str, typer.Argument(help="A YAML or JSON export; - reads stdin.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Import job definitions: every document is checked first, then all are applied, or none."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        _fail(InvalidInput("file", f"cannot read {file}: {exc.strerror}", "a readable file"))
    try:
        documents = transfer.load(text)
    except BelltowerError as exc:
        _fail(exc)
    result = _call(
        nats_url,
        lambda c: c.call(
            "scheduler",
            "jobs.import",
            ImportRequest(documents=documents, dry_run=dry_run),
            result_type=ImportResult,
        ),
    )
    if json_out:
        _json(result)
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


# -- runs -------------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    job: Annotated[str | None, typer.Option(help="Only runs of this job id.")] = None,
    status: Annotated[
        str | None, typer.Option(help="succeeded, failed, timed_out or running.")
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="Scheduled at or after this ISO date-time.")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Scheduled before this ISO date-time.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.")] = 100,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """List runs, newest first."""
    try:
        query: dict[str, Any] = {"limit": limit}
        if job:
            query["job_id"] = job
        if status:
            query["status"] = status
        if from_:
            query["since"] = parse_datetime(from_, field="from")
        if to:
            query["until"] = parse_datetime(to, field="to")
    except BelltowerError as exc:
        _fail(exc)
    runs = _call(
        nats_url, lambda c: c.call("history", "runs.list", query, result_type=list[RunRecord])
    )
    if json_out:
        _json(runs)
        return
    if not runs:
        typer.echo("No runs match.")
        return
    _table(
        ["run id", "scheduled for", "job", "status", "duration", "trigger", "summary"],
        [
            [
                r.run_id,
                _ts(r.scheduled_for),
                r.job_title,
                r.status,
                f"{r.duration_ms} ms" if r.duration_ms is not None else "-",
                r.trigger if r.trigger != "manual" else f"manual by {r.requested_by or '?'}",
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
        ("trigger", run.trigger + (f" by {run.requested_by}" if run.requested_by else "")),
        ("priority", str(run.priority)),
        ("scheduled for", _ts(run.scheduled_for)),
        ("dispatched at", _ts(run.dispatched_at)),
        ("started at", _ts(run.started_at)),
        ("finished at", _ts(run.finished_at)),
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
    nats_url: NatsUrl = None,
) -> None:
    """Show one run with its output."""
    run = _call(
        nats_url, lambda c: c.call("history", "runs.get", {"run_id": run_id}, result_type=RunRecord)
    )
    if json_out:
        _json(run)
    elif html:
        typer.echo(run.output_html or "(this run has no HTML output)")
    else:
        _show_run(run)


# -- previews ---------------------------------------------------------------------------------


def _preview(schedule: Schedule, since: str | None, count: int, json_out: bool) -> None:
    """Print the next ``count`` occurrences after ``since`` (default now) in the schedule's zone."""
    if count < 1:
        raise InvalidInput("count", f"{count} is not a number of occurrences", "1 or more")
    after = parse_datetime(since, schedule.tz, field="from") if since else datetime.now(UTC)
    compiled = compile_schedule(schedule)
    local = zone(schedule.tz)
    times = [t.astimezone(local) for t in compiled.upcoming(after, count)]
    rule = compiled.describe()
    if json_out:
        _json([{"at": t, "utc": t.astimezone(UTC), "rule": rule} for t in times])
        return
    typer.echo(f"{rule}, from {after.astimezone(local).isoformat(timespec='seconds')}:")
    for t in times:
        typer.echo(f"  {t.isoformat(timespec='seconds')}  {t.strftime('%a')}")
    if len(times) < count:
        typer.echo("  (no more occurrences: the schedule ends)")


CountOpt = Annotated[int, typer.Option(help="How many occurrences to list.")]
FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="List occurrences after this ISO date-time (default now)."),
]


@schedule_app.command("preview")
def schedule_preview(
    every: EveryOpt = None,
    cron: CronOpt = None,
    daily_at: DailyAtOpt = None,
    weekdays: WeekdaysOpt = None,
    once_at: OnceAtOpt = None,
    tz: TzOpt = "UTC",
    start: StartOpt = None,
    end: EndOpt = None,
    from_: FromOpt = None,
    count: CountOpt = 10,
    json_out: JsonFlag = False,
) -> None:
    """List the next occurrences of a schedule given as `jobs create` takes it; needs no services."""
    try:
        _preview(
            build_schedule(every, cron, daily_at, weekdays, once_at, tz, start, end),
            from_,
            count,
            json_out,
        )
    except BelltowerError as exc:
        _fail(exc)


@jobs_app.command("preview")
def jobs_preview(
    job_id: str,
    from_: FromOpt = None,
    count: CountOpt = 10,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """List the next occurrences of a stored job."""
    job = _call(
        nats_url, lambda c: c.call("scheduler", "jobs.get", {"id": job_id}, result_type=Job)
    )
    try:
        _preview(job.schedule, from_, count, json_out)
    except BelltowerError as exc:
        _fail(exc)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
