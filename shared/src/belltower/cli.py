"""``belltower``: define jobs and watch them run, from a shell.

Talks to the scheduler and history over NATS request-reply (``BELLTOWER_NATS_URL``).
Exit codes: 0 done, 1 not found or the run failed, 2 invalid input, 3 a service is unreachable.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer

from . import natsauth, natsclient, transfer
from .api import (
    After,
    Calendar,
    ImportRequest,
    ImportResult,
    Job,
    JobSpec,
    JobTypeInfo,
    LedgerEntry,
    RetryBackoff,
    RunNowResult,
    RunRecord,
    WhyResult,
)
from .calendars import days_from_ics, parse_days, read_ics
from .errors import BelltowerError, Conflict, InvalidInput, NotFound, Unavailable
from .events import EmailOn
from .rpc import ApiClient
from .schedule import (
    DST_GAP_FORM,
    DST_REPEAT_FORM,
    JITTER_FORM,
    ON_DEMAND_FORM,
    ON_DEMAND_TEXT,
    Cron,
    Daily,
    Every,
    Occurrence,
    Once,
    OnDemand,
    RRule,
    Rule,
    Schedule,
    Weekly,
    compile_schedule,
    parse_datetime,
    parse_every,
    parse_monthly,
    parse_times,
    parse_weekdays,
    parse_window,
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
calendars_app = typer.Typer(
    help="School calendars: named sets of non-school days that jobs skip or move past.",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")
app.add_typer(calendars_app, name="calendars")
app.add_typer(runs_app, name="runs")
app.add_typer(schedule_app, name="schedule")

EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_CONFLICT = 1, 2, 3, 4

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
EveryOpt = Annotated[
    str | None, typer.Option(help="Run every interval of elapsed time: 30s, 5m, 1h30m, 1d.")
]
CronOpt = Annotated[
    str | None,
    typer.Option(help="Cron expression: 5 fields, or 6 with seconds first ('0 30 7 * * mon-fri')."),
]
DailyAtOpt = Annotated[
    str | None, typer.Option(help="Run daily at HH:MM (comma-separate several times).")
]
WeeklyOpt = Annotated[
    str | None,
    typer.Option(help="Run weekly on these days (mon,wed,fri), at the --at times."),
]
MonthlyOpt = Annotated[
    str | None,
    typer.Option(
        help="Run monthly, at the --at times, on a day: 15, last (last day), 2nd-tue, last-fri."
    ),
]
AtOpt = Annotated[
    str | None, typer.Option(help="With --weekly or --monthly: HH:MM (comma-separate several).")
]
RRuleOpt = Annotated[
    str | None,
    typer.Option(
        help="iCalendar RRULE, e.g. 'FREQ=MONTHLY;BYDAY=1MO;BYHOUR=6;BYMINUTE=0'; "
        "DTSTART is --start."
    ),
]
WeekdaysOpt = Annotated[
    str | None,
    typer.Option(
        help="mon,tue,...: with --daily-at, the days it runs; with other kinds, occurrences on "
        "other days are skipped."
    ),
]
OnceAtOpt = Annotated[str | None, typer.Option(help="Run once at an ISO date-time.")]
OnDemandOpt = Annotated[
    bool,
    typer.Option(
        "--on-demand",
        help="No schedule of its own: run only when started by hand (`jobs run-now`) or, with "
        "--after, when the upstream job finishes.",
    ),
]
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
WindowOpt = Annotated[
    str | None,
    typer.Option(
        help="Only run between these local times, HH:MM-HH:MM (may cross midnight: 22:00-06:00)."
    ),
]
JitterOpt = Annotated[
    str | None,
    typer.Option(help="Delay each run by a fixed pseudo-random amount up to this, e.g. 5m."),
]
DstGapOpt = Annotated[
    str | None,
    typer.Option(
        help="A local time the spring-forward gap skips: run (at the end of the gap) or skip. "
        "Default: run for fixed times, skip for cron with a wildcard minute or hour."
    ),
]
DstRepeatOpt = Annotated[
    str | None,
    typer.Option(
        help="A local time the autumn change repeats: first, second or both passes. "
        "Default: first for fixed times, both for cron with a wildcard minute or hour."
    ),
]
CalendarOpt = Annotated[
    str | None,
    typer.Option(
        help="School calendar whose non-school days the job skips (see `belltower calendars`).",
        envvar="BELLTOWER_DEFAULT_CALENDAR",
        show_envvar=True,
    ),
]
PreviewCalendarOpt = Annotated[
    str | None,
    typer.Option(
        "--calendar",
        help="School calendar whose non-school days to apply (read from the scheduler).",
    ),
]
OnNonSchoolDayOpt = Annotated[
    str,
    typer.Option(
        help="On a non-school day of --calendar: skip, or next_school_day (same local time)."
    ),
]


# -- plumbing ---------------------------------------------------------------------------------


def _call(nats_url: str | None, fn: Callable[[ApiClient], Awaitable[T]]) -> T:
    settings = get_settings()
    if nats_url:
        settings = settings.model_copy(update={"nats_url": nats_url})
    settings = natsauth.with_dev_identity(settings, "cli")

    async def go() -> T:
        client = await ApiClient.connect(
            settings.nats_url,
            settings.request_timeout_s,
            natsclient.connect_options(settings, "cli"),
        )
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
        else EXIT_CONFLICT
        if isinstance(exc, Conflict)
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
    """The OS user asking, as run-now and pause records show it."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user} (cli)"


def _where(nats_url: str | None) -> str:
    """This machine's name and the address it reaches NATS from (no packet is sent)."""
    host = socket.gethostname()
    url = nats_url or get_settings().nats_url
    target = url.split("//", 1)[-1].split(",", 1)[0].rsplit("@", 1)[-1]
    name, _, port = target.rpartition(":") if ":" in target else (target, "", "4222")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((name or "127.0.0.1", int(port or 4222)))
            return f"{host} ({probe.getsockname()[0]})"
    except (OSError, ValueError):
        return host


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
        kinds = [
            p.get("type") or "|".join(map(str, p.get("enum", ["?"])))
            for p in prop.get("anyOf", [prop])
        ]
        default = (
            f" (default {json.dumps(prop['default'])})" if "default" in prop else " (required)"
        )
        about = f": {prop['description']}" if prop.get("description") else ""
        out[name] = "/".join(map(str, kinds)) + default + about
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
    *,
    weekly: str | None = None,
    monthly: str | None = None,
    at: str | None = None,
    rrule: str | None = None,
    window: str | None = None,
    jitter: str | None = None,
    dst_gap: str | None = None,
    dst_repeat: str | None = None,
    calendar: str | None = None,
    on_non_school_day: str = "skip",
    on_demand: bool = False,
) -> Schedule:
    """The schedule the flags describe, validated; raises InvalidInput naming the flag."""
    kinds = [
        name
        for name, v in (
            ("every", every),
            ("cron", cron),
            ("daily_at", daily_at),
            ("weekly", weekly),
            ("monthly", monthly),
            ("rrule", rrule),
            ("once_at", once_at),
        )
        if v
    ]
    if on_demand:
        return _on_demand_schedule(kinds, tz, calendar, on_non_school_day, start=start, end=end,
                                   weekdays=weekdays, at=at, window=window, jitter=jitter,
                                   dst_gap=dst_gap, dst_repeat=dst_repeat)  # fmt: skip
    given = kinds
    if len(given) != 1:
        raise InvalidInput(
            "schedule",
            "give exactly one of --every, --cron, --daily-at, --weekly, --monthly, --rrule, "
            "--once-at, --on-demand" + (f" (got {', '.join(given)})" if given else ""),
            "--every 30s | --cron '0 7 * * mon-fri' | --daily-at 07:30 [--weekdays mon,wed] | "
            "--weekly mon,wed --at 07:30 | --monthly 2nd-tue --at 07:30 | "
            "--rrule 'FREQ=DAILY;BYHOUR=7' | --once-at 2026-09-01T07:30 | --on-demand",
        )
    if at and not (weekly or monthly):
        raise InvalidInput("at", "only goes with --weekly or --monthly", "--weekly mon --at 07:30")
    if (weekly or monthly) and not at:
        raise InvalidInput(
            "at", f"--{given[0]} needs the times it runs at", "--at 07:30 or --at 07:30,12:00"
        )
    zone(tz)
    rule: Rule
    day_filter: list[str] | None = None
    if weekdays and not daily_at:
        day_filter = parse_weekdays(weekdays)
    if every:
        rule = Every(seconds=parse_every(every))
    elif cron:
        rule = Cron(expr=cron)
    elif daily_at:
        times = [t.strip() for t in daily_at.split(",") if t.strip()]
        rule = Daily(times=times, weekdays=parse_weekdays(weekdays) if weekdays else None)
    elif weekly:
        rule = Weekly(weekdays=parse_weekdays(weekly, "weekly"), times=parse_times(at or "", "at"))
    elif monthly:
        rule = parse_monthly(monthly, parse_times(at or "", "at"))
    elif rrule:
        rule = RRule(rule=rrule)
    else:
        rule = Once(at=parse_datetime(once_at or "", tz, field="once_at"))
    for name, value, form in (
        ("dst_gap", dst_gap, DST_GAP_FORM),
        ("dst_repeat", dst_repeat, DST_REPEAT_FORM),
    ):
        if value is not None and not value.strip():
            raise InvalidInput(name, "is empty", form)
    schedule = Schedule(
        rule=rule,
        tz=tz,
        start=parse_datetime(start, tz, field="start") if start else None,
        end=parse_datetime(end, tz, field="end") if end else None,
        window=parse_window(window) if window else None,
        weekdays=day_filter,
        jitter_s=parse_every(jitter, "jitter", JITTER_FORM) if jitter else 0,
        dst_gap=dst_gap.strip().lower() if dst_gap else None,
        dst_repeat=dst_repeat.strip().lower() if dst_repeat else None,
        calendar=calendar.strip() if calendar and calendar.strip() else None,
        on_non_school_day=on_non_school_day.strip().lower().replace("-", "_"),
    )
    if schedule.on_non_school_day != "skip" and schedule.calendar is None:
        raise InvalidInput(
            "on_non_school_day",
            "only goes with --calendar",
            "--calendar NAME --on-non-school-day next_school_day",
        )
    compile_schedule(schedule)
    return schedule


def _on_demand_schedule(
    kinds: list[str], tz: str, calendar: str | None, on_non_school_day: str, **others: str | None
) -> Schedule:
    """``--on-demand``: refuses every other schedule flag, naming the first one given."""
    if kinds:
        flag = "--" + kinds[0].replace("_", "-")
        raise InvalidInput(
            "on_demand",
            f"cannot be combined with {flag}: an on-demand job has no schedule of its own",
            ON_DEMAND_FORM,
        )
    if calendar and calendar == os.environ.get("BELLTOWER_DEFAULT_CALENDAR"):
        calendar = None  # the site's default calendar, not asked for: nothing to skip
    extra = [name for name, value in others.items() if value] + (["calendar"] if calendar else [])
    if on_non_school_day.strip().lower().replace("-", "_") != "skip":
        extra.append("on_non_school_day")
    if extra:
        flag = "--" + extra[0].replace("_", "-")
        raise InvalidInput(
            extra[0],
            f"{flag} does not apply to --on-demand: the job has no occurrences of its own to "
            "bound or filter",
            ON_DEMAND_FORM,
        )
    zone(tz)
    schedule = Schedule(rule=OnDemand(), tz=tz)
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


def parse_emails(values: list[str]) -> list[str]:
    """Addresses from repeated ``--email`` flags, each of which may hold a comma-separated list."""
    return [a.strip() for v in values for a in v.replace(";", ",").split(",") if a.strip()]


def parse_email_on(text: str) -> EmailOn:
    value = text.strip().lower()
    if value not in ("default", "always", "failure"):
        raise InvalidInput("email_on", f"{text!r} is not a choice", "always, failure or default")
    return value  # type: ignore[return-value]


def parse_backoff(text: str) -> RetryBackoff:
    """``INITIAL,FACTOR,MAX`` as in ``10s,2,10m``."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        return RetryBackoff(
            initial_s=float(parse_every(parts[0])) if parts[0] not in ("0", "0s") else 0.0,
            factor=float(parts[1]),
            max_s=float(parse_every(parts[2])),
        )
    except (ValueError, InvalidInput):
        raise InvalidInput(
            "retry_backoff", f"{text!r} is not INITIAL,FACTOR,MAX", "e.g. 10s,2,10m"
        ) from None


def parse_after(text: str) -> After:
    """``JOB_ID[:on][+delay]``, e.g. ``3f2a...:succeeded+10m``."""
    head, _, delay = text.partition("+")
    job, _, on = head.partition(":")
    on = on.strip() or "succeeded"
    if on not in ("succeeded", "failed", "finished"):
        raise InvalidInput(
            "after", f"{on!r} is not when to run", "JOB_ID[:succeeded|failed|finished][+DELAY]"
        )
    if not job.strip():
        raise InvalidInput(
            "after", f"{text!r} names no job", "JOB_ID[:on][+DELAY], e.g. ID:succeeded+10m"
        )
    return After(
        job=job.strip(),
        on=on,  # type: ignore[arg-type]
        delay_s=float(parse_every(delay.strip())) if delay.strip() else 0.0,
    )


@jobs_app.command("create")
def jobs_create(
    type_: Annotated[str, typer.Option("--type", help="Job type, see `belltower job-types`.")],
    title: Annotated[str, typer.Option(help="Title shown in lists and e-mails.")],
    every: EveryOpt = None,
    cron: CronOpt = None,
    daily_at: DailyAtOpt = None,
    weekly: WeeklyOpt = None,
    monthly: MonthlyOpt = None,
    at: AtOpt = None,
    rrule: RRuleOpt = None,
    weekdays: WeekdaysOpt = None,
    once_at: OnceAtOpt = None,
    on_demand: OnDemandOpt = False,
    tz: TzOpt = "UTC",
    window: WindowOpt = None,
    jitter: JitterOpt = None,
    dst_gap: DstGapOpt = None,
    dst_repeat: DstRepeatOpt = None,
    calendar: CalendarOpt = None,
    on_non_school_day: OnNonSchoolDayOpt = "skip",
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
            "those within --catch-up-window, at most --catch-up-max) or skip. Every missed "
            "occurrence is recorded either way."
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
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Define a job and schedule it."""
    try:
        if catch_up not in ("latest", "all", "skip"):
            raise InvalidInput("catch_up", f"{catch_up!r} is not a policy", "latest, all or skip")
        if overlap not in ("skip", "buffer", "allow"):
            raise InvalidInput("overlap", f"{overlap!r} is not a policy", "skip, buffer or allow")
        spec = JobSpec(
            type=type_,
            title=title,
            schedule=build_schedule(
                every,
                cron,
                daily_at,
                weekdays,
                once_at,
                tz,
                start,
                end,
                weekly=weekly,
                monthly=monthly,
                at=at,
                rrule=rrule,
                window=window,
                jitter=jitter,
                dst_gap=dst_gap,
                dst_repeat=dst_repeat,
                calendar=calendar,
                on_non_school_day=on_non_school_day,
                on_demand=on_demand,
            ),
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
                _next_run_text(j),
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
        rows.append(("paused by", f"{job.paused_by} at {_ts(job.paused_at)}"))
    for key, value in rows:
        typer.echo(f"{key + ':':<14}{value}")


def _next_run_text(job: Job) -> str:
    if isinstance(job.schedule.rule, OnDemand) and job.next_run_at is None:
        return "on demand" + (" or after upstream" if job.after else "")
    return _ts(job.next_run_at)


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
    return job.catch_up


def _retries_text(job: Job) -> str:
    b = job.retry_backoff
    deliveries = job.max_deliveries if job.max_deliveries is not None else job.retries + 3
    backoff = f", backoff {b.initial_s:g}s x{b.factor:g} up to {b.max_s:g}s" if job.retries else ""
    return f"{job.retries}{backoff}; dead-lettered after {deliveries} deliveries"


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


def _pause_request(job_id: str, nats_url: str | None) -> dict[str, str]:
    return {"id": job_id, "requested_by": _who(), "requested_from": _where(nats_url)}


@jobs_app.command("pause")
def jobs_pause(job_id: str, nats_url: NatsUrl = None) -> None:
    """Stop scheduling a job until it is resumed (who paused it is recorded)."""
    request = _pause_request(job_id, nats_url)
    job = _call(nats_url, lambda c: c.call("scheduler", "jobs.pause", request, result_type=Job))
    typer.echo(f"paused {job.title} ({job.id})")


@jobs_app.command("resume")
def jobs_resume(job_id: str, nats_url: NatsUrl = None) -> None:
    """Schedule a paused job again, from now on; the occurrences of the pause are recorded skipped."""
    request = _pause_request(job_id, nats_url)
    job = _call(nats_url, lambda c: c.call("scheduler", "jobs.resume", request, result_type=Job))
    typer.echo(f"resumed {job.title} ({job.id}); next run {_ts(job.next_run_at)}")


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
            "policy: skip refuses, buffer queues the run behind the one going).",
        ),
    ] = False,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Run a job once now, outside its schedule (recorded as a manual run).

    The job's overlap policy applies while a run of it is still going: skip refuses (exit 4,
    naming that run; --force runs anyway), buffer queues this run behind it, allow runs at once."""

    async def go(client: ApiClient) -> tuple[RunNowResult, RunRecord | None]:
        request: dict[str, Any] = {
            "id": job_id,
            "requested_by": _who(),
            "requested_from": _where(nats_url),
        }
        if force:
            request["force"] = True
        result = await client.call("scheduler", "jobs.run_now", request, result_type=RunNowResult)
        if result.state == "waiting" and not json_out:
            typer.echo(f"queued run {result.run_id}: {result.note}", err=True)
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
        done = "queued" if result.state == "waiting" else "dispatched"
        typer.echo(f"{done} run {result.run_id} (occurrence {result.occurrence_id})")
        typer.echo(f"see it with: belltower runs show {result.run_id}")
    else:
        _show_run(run)
    if run is not None and run.status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


def _what_happened(e: LedgerEntry) -> str:
    """One occurrence's fate in a sentence a registrar can read."""
    if e.trigger == "manual":
        origin = "run now" + (f" by {e.requested_by}" if e.requested_by else "")
        origin += f" from {e.requested_from}" if e.requested_from else ""
        origin += ": "
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
        return f"{origin}ran: {outcome}; run {e.run_id}, dispatched {_ts(e.dispatched_at)}"
    if e.state == "pending":
        return f"{origin}being dispatched (run {e.run_id})"
    if e.state == "delayed":
        return f"{origin}waits for its delay, runs at {_ts(e.scheduled_for)}"
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
        when = _ts(group[0].scheduled_for)
        if len(group) > 1:  # newest first
            when = f"{_ts(group[-1].scheduled_for)} … {when} ({len(group)})"
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


@jobs_app.command("why")
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
    nats_url: NatsUrl = None,
) -> None:
    """Why did (or didn't) a job run? Every occurrence and what became of it, with the reason."""
    try:
        query: dict[str, Any] = {"id": job_id, "limit": limit}
        if from_:
            query["since"] = parse_datetime(from_, field="from")
        if to:
            query["until"] = parse_datetime(to, field="to")
    except BelltowerError as exc:
        _fail(exc)

    async def go(client: ApiClient) -> WhyResult:
        why = await client.call("scheduler", "jobs.why", query, result_type=WhyResult)
        unknown = [
            e
            for e in why.occurrences
            if e.state == "dispatched" and e.run_status in (None, "running")
        ]
        if unknown:
            # The ledger learns outcomes from run events; history fills in what it has not seen.
            runs_query = {"job_id": why.job_id, "limit": 10_000}
            if why.since:
                runs_query["since"] = why.since
            if why.until:
                runs_query["until"] = why.until
            try:
                runs = await client.call(
                    "history", "runs.list", runs_query, result_type=list[RunRecord]
                )
            except BelltowerError:
                runs = []
            by_occurrence = {r.occurrence_id: r for r in runs}
            for e in unknown:
                if (r := by_occurrence.get(e.occurrence_id)) is not None:
                    e.run_status, e.run_error = r.status, r.error
        return why

    why = _call(nats_url, go)
    if json_out:
        _json(why)
        return
    span = f" from {_ts(why.since)}" if why.since else ""
    span += f" to {_ts(why.until)}" if why.until else ""
    typer.echo(f"{why.title} ({why.job_id}){span}")
    typer.echo(f"  schedule: {why.schedule_text}")
    open_pause = next((p for p in why.pauses if p.resumed_at is None), None)
    if why.paused:
        by = f" by {open_pause.paused_by}" if open_pause and open_pause.paused_by else ""
        by += f" from {open_pause.paused_from}" if open_pause and open_pause.paused_from else ""
        at = f" at {_ts(open_pause.paused_at)}" if open_pause else ""
        typer.echo(f"  state:    PAUSED{by}{at}: it does not run until resumed")
    elif why.on_demand:
        typer.echo("  state:    active, on demand: it runs when started by hand or chained")
    elif why.next_run_at is None:
        end = f" (end {_ts(why.schedule_end)})" if why.schedule_end else ""
        typer.echo(f"  state:    no further occurrence: the schedule has ended{end}")
    else:
        typer.echo(f"  state:    active, next run {_ts(why.next_run_at)}")
    if not why.occurrences:
        typer.echo("No occurrence in this period.")
    else:
        _table(["scheduled for", "trigger", "what happened"], _why_rows(why.occurrences))
    for p in why.pauses:
        resumed = (
            f", resumed at {_ts(p.resumed_at)} by {p.resumed_by or 'someone'}"
            + (f" from {p.resumed_from}" if p.resumed_from else "")
            if p.resumed_at
            else ", not resumed yet"
        )
        where = f" from {p.paused_from}" if p.paused_from else ""
        typer.echo(f"paused at {_ts(p.paused_at)} by {p.paused_by or 'someone'}{where}{resumed}")


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
        str | None,
        typer.Option(help="succeeded, failed, timed_out, dead_lettered or running."),
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
        (
            "trigger",
            run.trigger
            + (f" by {run.requested_by}" if run.requested_by else "")
            + (f" from {run.requested_from}" if run.requested_from else ""),
        ),
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


def _preview(
    schedule: Schedule,
    since: str | None,
    count: int,
    json_out: bool,
    non_school_days: Sequence[date] = (),
    after: After | None = None,
    job_id: str | None = None,
) -> None:
    """Print the next ``count`` occurrences after ``since`` (default now) in the schedule's zone,
    with the skipped ones between and why they were skipped.

    An on-demand schedule has none: it says when the job runs instead (``--json`` gives the
    empty list, the same shape as every other schedule's preview)."""
    if count < 1:
        raise InvalidInput("count", f"{count} is not a number of occurrences", "1 or more")
    if isinstance(schedule.rule, OnDemand):
        compile_schedule(schedule)
        runs = _on_demand_runs(after, job_id)
        if json_out:
            _json([])
            return
        typer.echo(f"{ON_DEMAND_TEXT}: no scheduled occurrences.")
        typer.echo(f"  {runs}.")
        return
    after = parse_datetime(since, schedule.tz, field="from") if since else datetime.now(UTC)
    compiled = compile_schedule(schedule, non_school_days=non_school_days)
    local = zone(schedule.tz)
    found = compiled.preview(after, count)
    runnable = sum(1 for o in found if o.skipped is None)
    if json_out:
        _json([_occurrence_json(o, local) for o in found])
        return
    typer.echo(
        f"{compiled.describe()}, from {after.astimezone(local).isoformat(timespec='seconds')}:"
    )
    for occ in found:
        t = occ.at.astimezone(local)
        line = f"  {t.isoformat(timespec='seconds')}  {t.strftime('%a')}"
        if occ.skipped:
            line += f"  skipped: {occ.skipped}"
        if occ.note:
            line += f"  ({occ.note})"
        typer.echo(line)
    if runnable < count:
        typer.echo("  (no more occurrences: the schedule ends)")


def _on_demand_runs(after: After | None, job_id: str | None = None) -> str:
    """When an on-demand job runs, in a sentence."""
    by_hand = f"It runs only when started by hand (`belltower jobs run-now {job_id or 'JOB_ID'}`)"
    if after is None:
        return f"{by_hand}, or when its upstream job finishes if it was created with --after"
    delay = f", {_words_s(after.delay_s)} later" if after.delay_s else ""
    when = {"succeeded": "succeeds", "failed": "fails", "finished": "finishes"}[after.on]
    return f"{by_hand} or when its upstream job {after.job} {when}{delay}"


def _words_s(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 or seconds % 60 else f"{seconds / 60:g} min"


def _occurrence_json(occ: Occurrence, local: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": occ.at.astimezone(local),
        "utc": occ.at,
        "rule": occ.rule,
        "skipped": occ.skipped is not None,
        "reason": occ.skipped,
    }
    if occ.note:
        out["note"] = occ.note
    if occ.nominal != occ.at:
        out["nominal"] = occ.nominal.astimezone(local)
    return out


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
    weekly: WeeklyOpt = None,
    monthly: MonthlyOpt = None,
    at: AtOpt = None,
    rrule: RRuleOpt = None,
    weekdays: WeekdaysOpt = None,
    once_at: OnceAtOpt = None,
    on_demand: OnDemandOpt = False,
    tz: TzOpt = "UTC",
    start: StartOpt = None,
    end: EndOpt = None,
    window: WindowOpt = None,
    jitter: JitterOpt = None,
    dst_gap: DstGapOpt = None,
    dst_repeat: DstRepeatOpt = None,
    calendar: PreviewCalendarOpt = None,
    on_non_school_day: OnNonSchoolDayOpt = "skip",
    from_: FromOpt = None,
    count: CountOpt = 10,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """List the next occurrences of a schedule given as `jobs create` takes it.

    Needs no running services, unless --calendar names a school calendar to read."""
    try:
        schedule = build_schedule(
            every,
            cron,
            daily_at,
            weekdays,
            once_at,
            tz,
            start,
            end,
            weekly=weekly,
            monthly=monthly,
            at=at,
            rrule=rrule,
            window=window,
            jitter=jitter,
            dst_gap=dst_gap,
            dst_repeat=dst_repeat,
            calendar=calendar,
            on_non_school_day=on_non_school_day,
            on_demand=on_demand,
        )
    except BelltowerError as exc:
        _fail(exc)
    days = _calendar_days(nats_url, schedule.calendar)
    try:
        _preview(schedule, from_, count, json_out, days)
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
    days = _calendar_days(nats_url, job.schedule.calendar)
    try:
        _preview(job.schedule, from_, count, json_out, days, job.after, job.id)
    except BelltowerError as exc:
        _fail(exc)


def _calendar_days(nats_url: str | None, name: str | None) -> list[date]:
    if name is None:
        return []
    cal = _call(
        nats_url,
        lambda c: c.call("scheduler", "calendars.get", {"name": name}, result_type=Calendar),
    )
    return [d.day for d in cal.days]


# -- school calendars -------------------------------------------------------------------------


def _show_calendar(cal: Calendar) -> None:
    typer.echo(f"{cal.name}" + (f"  {cal.description}" if cal.description else ""))
    typer.echo(f"{len(cal.days)} non-school days; used by {len(cal.jobs)} job(s)")
    for d in cal.days:
        typer.echo(f"  {d.day.isoformat()}  {d.day.strftime('%a')}  {d.label}".rstrip())


DaysArg = Annotated[
    list[str] | None,
    typer.Argument(help="Days as YYYY-MM-DD or ranges YYYY-MM-DD..YYYY-MM-DD (both included)."),
]
LabelOpt = Annotated[str, typer.Option(help="What the days are, e.g. 'Winter break'.")]


@calendars_app.command("create")
def calendars_create(
    name: Annotated[str, typer.Argument(help="Calendar name, e.g. district-2026-27.")],
    days: DaysArg = None,
    description: Annotated[str, typer.Option(help="What the calendar is for.")] = "",
    label: LabelOpt = "",
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Create a school calendar, optionally with its first non-school days."""
    try:
        parsed = parse_days(days) if days else []
    except BelltowerError as exc:
        _fail(exc)
    body = {
        "name": name,
        "description": description,
        "days": [{"day": d.isoformat(), "label": label} for d in parsed],
    }
    cal = _call(
        nats_url, lambda c: c.call("scheduler", "calendars.create", body, result_type=Calendar)
    )
    _json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("list")
def calendars_list(json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """List the school calendars."""
    cals = _call(nats_url, lambda c: c.call("scheduler", "calendars.list"))
    if json_out:
        _json(cals)
        return
    if not cals:
        typer.echo("No calendars yet. Create one with `belltower calendars create NAME`.")
        return
    _table(
        ["name", "days", "description"],
        [[c["name"], str(c["days"]), c["description"]] for c in cals],
    )


@calendars_app.command("show")
def calendars_show(name: str, json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """Show a calendar's non-school days and the jobs that use it."""
    cal = _call(
        nats_url,
        lambda c: c.call("scheduler", "calendars.get", {"name": name}, result_type=Calendar),
    )
    _json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("delete")
def calendars_delete(name: str, nats_url: NatsUrl = None) -> None:
    """Delete a calendar no job uses."""
    _call(nats_url, lambda c: c.call("scheduler", "calendars.delete", {"name": name}))
    typer.echo(f"deleted calendar {name}")


@calendars_app.command("add-days")
def calendars_add_days(
    name: str,
    days: DaysArg = None,
    label: LabelOpt = "",
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Add non-school days to a calendar (a day already there gets the new label)."""
    try:
        parsed = parse_days(days or [])
    except BelltowerError as exc:
        _fail(exc)
    body = {"name": name, "days": [{"day": d.isoformat(), "label": label} for d in parsed]}
    cal = _call(
        nats_url, lambda c: c.call("scheduler", "calendars.add_days", body, result_type=Calendar)
    )
    _json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("import")
def calendars_import(
    name: str,
    ics: Annotated[str, typer.Option("--ics", help="An .ics file, or an http(s) URL of one.")],
    replace: Annotated[
        bool, typer.Option(help="Drop the calendar's days first, so it matches the file.")
    ] = False,
    create: Annotated[bool, typer.Option(help="Create the calendar if it does not exist.")] = False,
    since: Annotated[
        str | None,
        typer.Option(help="Expand recurring events from this date (default today)."),
    ] = None,
    horizon_days: Annotated[
        int, typer.Option(help="Expand recurring events this many days ahead.")
    ] = 3 * 366,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Import non-school days from an iCalendar file or URL: all-day events, multi-day ranges
    and recurring holidays (expanded within the horizon); each day is labelled with the event."""
    try:
        start = parse_days([since], field="since")[0] if since else datetime.now(UTC).date()
        if horizon_days < 1:
            raise InvalidInput("horizon_days", f"{horizon_days} is too small", "1 or more days")
        found = days_from_ics(read_ics(ics), since=start, horizon_days=horizon_days)
    except BelltowerError as exc:
        _fail(exc)
    days = [{"day": d.isoformat(), "label": label} for d, label in found]

    async def go(client: ApiClient) -> Calendar:
        if create:
            try:
                await client.call(
                    "scheduler", "calendars.get", {"name": name}, result_type=Calendar
                )
            except NotFound:
                await client.call("scheduler", "calendars.create", {"name": name})
        return await client.call(
            "scheduler",
            "calendars.add_days",
            {"name": name, "days": days, "replace": replace},
            result_type=Calendar,
        )

    cal = _call(nats_url, go)
    if json_out:
        _json(cal)
        return
    typer.echo(f"imported {len(days)} non-school days into {name}")
    _show_calendar(cal)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
