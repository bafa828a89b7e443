"""Job state in the CLI: ``jobs pause --note``, ``jobs update`` of max runs and failure
thresholds, and the lines ``jobs show`` prints about them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..api import Job
from ..errors import BelltowerError, InvalidInput
from ..jobstate import check_pause_note
from .options import JsonFlag, ProfileOpt
from .output import fail, print_json
from .remote import call, seg

MaxRunsOpt = Annotated[
    int | None,
    typer.Option(
        help="End the job after this many runs its schedule dispatched (run-now does not "
        "count): it is paused with the note 'max runs reached'. 0 clears the limit.",
        envvar="BELLTOWER_JOB_MAX_RUNS",
    ),
]
AlertAfterOpt = Annotated[
    int | None,
    typer.Option(
        help="Mail the result addresses and publish belltower.job.failing after this many "
        "consecutive failed runs (and a recovery notice on the next success). 0 clears it.",
        envvar="BELLTOWER_JOB_ALERT_AFTER_FAILURES",
    ),
]
PauseAfterOpt = Annotated[
    int | None,
    typer.Option(
        help="Pause the job after this many consecutive failed runs, noting why. 0 clears it.",
        envvar="BELLTOWER_JOB_PAUSE_AFTER_FAILURES",
    ),
]
ConcurrencyKeyOpt = Annotated[
    str | None,
    typer.Option(
        help="The target this job's runs share with other jobs, a literal or a template over "
        "its params, e.g. 'canvas:{base_url}' or 'sftp:{host}' (with --concurrency-limit). "
        "Left out, the job type's own key applies; '' means none.",
        envvar="BELLTOWER_JOB_CONCURRENCY_KEY",
    ),
]
ConcurrencyLimitOpt = Annotated[
    int | None,
    typer.Option(
        help="Runs at once of all jobs with the same concurrency key; the others wait in "
        "priority order (the ledger says they waited).",
        envvar="BELLTOWER_JOB_CONCURRENCY_LIMIT",
    ),
]
NoteOpt = Annotated[
    str | None,
    typer.Option(
        help="Why the job is paused: one line, at most 500 characters, shown in `jobs show` "
        "and the console with who paused it and when.",
        envvar="BELLTOWER_PAUSE_NOTE",
    ),
]


def state_fields(
    max_runs: int | None, alert_after: int | None, pause_after: int | None
) -> dict[str, Any]:
    """The job-document fields these options set (0 is null: no limit); refuses negatives."""
    fields: dict[str, Any] = {}
    for name, flag, value in (
        ("max_runs", "--max-runs", max_runs),
        ("alert_after_failures", "--alert-after-failures", alert_after),
        ("pause_after_failures", "--pause-after-failures", pause_after),
    ):
        if value is None:
            continue
        if value < 0:
            raise InvalidInput(name, f"{flag} {value} is negative", "a whole number, 0 to clear")
        fields[name] = value or None
    return fields


def limit_fields(key: str | None, limit: int | None) -> dict[str, Any]:
    """The job-document fields the concurrency options set; an empty key clears the limit too."""
    fields: dict[str, Any] = {}
    if key is not None:
        fields["concurrency_key"] = key
        if key == "":
            fields["concurrency_limit"] = None
    if limit is not None:
        if key == "":
            raise InvalidInput(
                "concurrency_limit", "is set with an empty --concurrency-key", "a key, or no limit"
            )
        fields["concurrency_limit"] = limit
    return fields


def jobs_pause(job_id: str, note: NoteOpt = None, profile: ProfileOpt = None) -> None:
    """Stop scheduling a job until it is resumed (who paused it, when and why are recorded)."""
    try:
        checked = check_pause_note(note)
    except BelltowerError as exc:
        fail(exc)
    body = None if checked is None else {"note": checked}
    job = call(profile, lambda api: api.send("POST", f"/jobs/{seg(job_id)}/pause", Job, body))
    typer.echo(f"paused {job.title} ({job.id})" + (f": {job.pause_note}" if job.pause_note else ""))


def jobs_update(
    job_id: str,
    max_runs: MaxRunsOpt = None,
    alert_after_failures: AlertAfterOpt = None,
    pause_after_failures: PauseAfterOpt = None,
    concurrency_key: ConcurrencyKeyOpt = None,
    concurrency_limit: ConcurrencyLimitOpt = None,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Change a job's max runs, failure thresholds and concurrency limit (other fields: export,
    edit, import)."""
    try:
        fields = state_fields(max_runs, alert_after_failures, pause_after_failures)
        fields |= limit_fields(concurrency_key, concurrency_limit)
        if not fields:
            raise InvalidInput(
                "options",
                "nothing to change",
                "--max-runs, --alert-after-failures, --pause-after-failures, "
                "--concurrency-key or --concurrency-limit",
            )
    except BelltowerError as exc:
        fail(exc)
    job = call(profile, lambda api: api.send("PATCH", f"/jobs/{seg(job_id)}", Job, fields))
    if json_out:
        print_json(job)
        return
    typer.echo(f"updated {job.title} ({job.id})")
    for key, value in state_rows(job):
        typer.echo(f"{key + ':':<14}{value}")


def state_rows(job: Job) -> list[tuple[str, str]]:
    """What ``jobs show`` says of the job's state."""
    rows: list[tuple[str, str]] = []
    if job.paused and job.pause_note:
        rows.append(("pause note", job.pause_note))
    if job.max_runs is not None:
        rows.append(
            ("max runs", f"{job.max_runs} ({job.runs_left} left, {job.runs_counted} dispatched)")
        )
    alerts = []
    if job.alert_after_failures:
        alerts.append(f"alert after {job.alert_after_failures}")
    if job.pause_after_failures:
        alerts.append(f"pause after {job.pause_after_failures}")
    rows.append(("on failures", ", ".join(alerts) + " in a row" if alerts else "-"))
    rows.append(("failing", f"{job.failure_streak} in a row" if job.failure_streak else "no"))
    rows.append(("expected", expected_text(job)))
    if job.concurrency_key_value is not None:
        rows.append(
            (
                "limit",
                f"{job.concurrency_limit} at once of {job.concurrency_key_value} "
                f"({job.concurrency_running} running, {job.concurrency_waiting} waiting)",
            )
        )
    return rows


def expected_text(job: Job) -> str:
    if job.expected_duration_s is None:
        return "- (no succeeded run yet)"
    text = f"{job.expected_duration_s:.3g}s (p95 of the last {job.expected_duration_runs} runs)"
    if job.overdue_after_s is not None:
        text += f"; overdue after {job.overdue_after_s:.3g}s"
    return text
