"""The job form: fields generated from a job type's parameter JSON Schema, and back to a document.

Values travel as text, as a user types them; the scheduler converts parameters by their schema
and checks everything, so the form and the API refuse the same things with the same messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from belltower.api import FieldError, Job, JobTypeInfo
from belltower.errors import InvalidInput
from belltower.jobstate import MAX_FAILURES_LIMIT, MAX_RUNS_LIMIT
from belltower.schedule import (
    WEEKDAYS,
    Cron,
    Daily,
    Every,
    Once,
    OnDemand,
    Schedule,
    ScheduleFlags,
    compile_schedule,
    parse_every,
    zone,
)

KINDS = {
    "every": "Every interval",
    "daily": "Daily at",
    "cron": "Cron expression",
    "once": "Once",
    "on_demand": "On demand only (run now, or after its upstream job)",
}
KEEP = [
    ("7", "a week"),
    ("30", "30 days"),
    ("31", "a month"),
    ("92", "three months"),
    ("366", "a year"),
    ("forever", "forever"),
]
SCHEDULE_FIELDS = {
    "every",
    "cron",
    "daily_at",
    "weekdays",
    "once_at",
    "tz",
    "start",
    "end",
    "schedule",
    "on_demand",
}


@dataclass
class ParamField:
    """One parameter of a job type, as a form control."""

    name: str
    label: str
    control: str
    """checkbox, number, select, textarea or text."""
    required: bool
    help: str
    options: list[str] = field(default_factory=list)
    step: str = "1"
    default: str | None = None
    """The default as the form shows it; a submitted default is left out, so the job keeps following it."""


def _root(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    defs = schema.get("$defs", {})
    ref = schema.get("$ref", "")
    root = defs.get(ref.removeprefix("#/$defs/"), schema) if ref.startswith("#/$defs/") else schema
    return root, defs


def _kinds(prop: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].removeprefix("#/$defs/"), {})
    if "anyOf" in prop:
        return [k for sub in prop["anyOf"] for k in _kinds(sub, defs)]
    kind = prop.get("type")
    return (
        kind if isinstance(kind, list) else [kind] if kind else (["enum"] if "enum" in prop else [])
    )


def param_fields(info: JobTypeInfo) -> list[ParamField]:
    root, defs = _root(info.params_schema)
    required = set(root.get("required", []))
    fields = []
    for name, prop in root.get("properties", {}).items():
        kinds = [k for k in _kinds(prop, defs) if k != "null"]
        enum = prop.get("enum") or next(
            (s.get("enum") for s in prop.get("anyOf", []) if "enum" in s), None
        )
        help_parts = [prop.get("description", "")]
        if "default" in prop:
            help_parts.append(f"Default: {json.dumps(prop['default'])}.")
        if enum:
            control = "select"
        elif kinds == ["boolean"]:
            control = "checkbox"
        elif kinds and set(kinds) <= {"integer", "number"}:
            control = "number"
        elif "object" in kinds:
            control = "textarea"
            help_parts.append("A JSON object.")
        else:
            control = "text"
            if "array" in kinds:
                help_parts.append("Separate several values with commas.")
        for key, word in (("minimum", "at least"), ("maximum", "at most")):
            if key in prop:
                help_parts.append(f"{word.capitalize()} {prop[key]}.")
        fields.append(
            ParamField(
                name=name,
                label=prop.get("title") or name.replace("_", " ").capitalize(),
                control=control,
                required=name in required,
                help=" ".join(p for p in help_parts if p),
                options=[str(o) for o in enum or []],
                step="1" if kinds == ["integer"] else "any",
                default=as_text(prop["default"]) if "default" in prop else None,
            )
        )
    return fields


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def values_of(job: Job | None, info: JobTypeInfo | None) -> dict[str, Any]:
    """The form's initial values: the job's, or the type's defaults for a new one."""
    values: dict[str, Any] = {
        "kind": "daily",
        "every": "1h",
        "daily_at": "07:00",
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "tz": "UTC",
        "priority": "500",
        "keep_history": "30",
        "title": "",
    }
    params: dict[str, Any] = {}
    if info is not None:
        root, _ = _root(info.params_schema)
        params = {k: p["default"] for k, p in root.get("properties", {}).items() if "default" in p}
    if job is not None:
        rule = job.schedule.rule
        values.update(
            title=job.title,
            tz=job.schedule.tz,
            priority=str(job.priority),
            paused=job.paused,
            keep_history="forever" if job.keep_history_days is None else str(job.keep_history_days),
            timeout="" if job.timeout_s is None else f"{int(job.timeout_s)}s",
            result_emails=", ".join(job.result_emails),
            result_email_on=job.result_email_on,
            catch_up=job.catch_up,
            **{f: "" if getattr(job, f) is None else str(getattr(job, f)) for f in LIMIT_FIELDS},
            start=_local(job.schedule.start),
            end=_local(job.schedule.end),
            weekdays=[],
        )
        if not form_can_express(job.schedule):
            # Weekly, monthly, RRULE, windows, calendars, jitter, DST choices: the form would
            # lose them, so an edit keeps the schedule unless the user picks another one.
            values.update(kind=KEEP_SCHEDULE, kept_schedule=job.schedule_text)
        elif isinstance(rule, Every):
            values.update(kind="every", every=f"{rule.seconds}s")
        elif isinstance(rule, Cron):
            values.update(kind="cron", cron=rule.expr)
        elif isinstance(rule, Daily):
            values.update(
                kind="daily",
                daily_at=", ".join(rule.times),
                weekdays=rule.weekdays or list(WEEKDAYS),
            )
        elif isinstance(rule, Once):
            values.update(kind="once", once_at=_local(rule.at))
        elif isinstance(rule, OnDemand):
            values.update(kind="on_demand")
        params |= job.params
    for name, value in params.items():
        values[f"param.{name}"] = value if isinstance(value, bool) else as_text(value)
    return values


KEEP_SCHEDULE = "keep"
LIMIT_FIELDS = {
    "max_runs": MAX_RUNS_LIMIT,
    "alert_after_failures": MAX_FAILURES_LIMIT,
    "pause_after_failures": MAX_FAILURES_LIMIT,
}
"""The job state's counts the form edits, with the largest the scheduler accepts; empty means none."""
"""The form's frequency choice that leaves a stored job's schedule as it is."""


def form_can_express(schedule: Schedule) -> bool:
    """Whether the form's frequency fields can show ``schedule`` without losing any of it."""
    plain = (
        schedule.window is None
        and schedule.jitter_s == 0
        and schedule.dst_gap is None
        and schedule.dst_repeat is None
        and schedule.calendar is None
    )
    rule = schedule.rule
    if isinstance(rule, Daily):
        return plain
    return plain and schedule.weekdays is None and isinstance(rule, Every | Cron | Once | OnDemand)


def _local(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value else ""


def read_form(
    form: dict[str, Any], weekdays: list[str], info: JobTypeInfo
) -> tuple[dict[str, Any], list[FieldError]]:
    """A job document from the submitted form, and the errors found before asking the scheduler."""
    errors: list[FieldError] = []
    text = {k: (v.strip() if isinstance(v, str) else v) for k, v in form.items()}
    kind = text.get("kind", "")
    tz = text.get("tz") or "UTC"
    schedule: Any = {"rule": {"kind": "every", "seconds": 3600}, "tz": "UTC"}
    if kind == KEEP_SCHEDULE:
        schedule = None
    try:
        if kind == KEEP_SCHEDULE:
            raise _Kept
        built = ScheduleFlags(
            every=text.get("every") if kind == "every" else None,
            cron=text.get("cron") if kind == "cron" else None,
            daily_at=text.get("daily_at") if kind == "daily" else None,
            weekdays=",".join(weekdays)
            if kind == "daily" and weekdays and len(weekdays) < 7
            else None,
            once_at=text.get("once_at") if kind == "once" else None,
            tz=tz,
            start=text.get("start") or None,
            end=text.get("end") or None,
            on_demand=kind == "on_demand",
        ).build()
        schedule = msgspec.to_builtins(built)
    except _Kept:
        pass
    except InvalidInput as exc:
        errors.append(FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted))
    if kind == "daily" and not weekdays:
        errors.append(
            FieldError(field="weekdays", message="no weekday chosen", accepted="at least one day")
        )
    try:
        priority: Any = int(text.get("priority") or "500")
    except ValueError:
        errors.append(
            FieldError(
                field="priority",
                message=f"{text.get('priority')!r} is not a whole number",
                accepted="e.g. 500",
            )
        )
        priority = 500
    keep = text.get("keep_history") or "30"
    timeout_s = None
    if text.get("timeout"):
        try:
            timeout_s = float(parse_every(text["timeout"]))
        except InvalidInput as exc:
            errors.append(FieldError(field="timeout_s", message=exc.reason, accepted=exc.accepted))
    limits = _limits(text, errors)
    params: dict[str, Any] = {}
    for f in param_fields(info):
        key = f"param.{f.name}"
        given = ("true" if key in form else "false") if f.control == "checkbox" else text.get(key)
        if given in (None, ""):
            continue
        number_default = (
            f.control == "number" and f.default is not None and _same_number(given, f.default)
        )
        if given != f.default and not number_default:
            params[f.name] = given
    doc = {
        "type": info.name,
        "title": text.get("title") or "",
        **({} if schedule is None else {"schedule": schedule}),
        "priority": priority,
        "params": params,
        "paused": "paused" in form,
        "keep_history_days": None if keep == "forever" else int(keep) if keep.isdigit() else 30,
        "timeout_s": timeout_s,
        "result_emails": [
            a.strip()
            for a in (text.get("result_emails") or "").replace(";", ",").split(",")
            if a.strip()
        ],
        "result_email_on": text.get("result_email_on") or "default",
        # Only when the form has the field (a patch leaves the job's policy as it is otherwise).
        **({"catch_up": text["catch_up"]} if text.get("catch_up") else {}),
        **limits,
    }
    return doc, errors


def _limits(text: dict[str, Any], errors: list[FieldError]) -> dict[str, int | None]:
    """Max runs and the failure streak's alert and pause counts, for the fields the form has
    (an empty one clears the limit; one the form lacks leaves the job's as it is)."""
    out: dict[str, int | None] = {}
    for name, ceiling in LIMIT_FIELDS.items():
        if name not in text:
            continue
        given = text[name]
        if given in (None, ""):
            out[name] = None
        elif (
            isinstance(given, str)
            and given.isascii()
            and given.isdigit()
            and 1 <= int(given) <= ceiling
        ):
            out[name] = int(given)
        else:
            errors.append(
                FieldError(
                    field=name,
                    message=f"{str(given)[:40]!r} is not a whole number from 1 to {ceiling:,}",
                    accepted="empty for no limit, or e.g. 5",
                )
            )
    return out


class _Kept(Exception):
    """The form keeps the stored schedule: nothing to build."""


def by_field(errors: list[FieldError]) -> dict[str, str]:
    """Messages keyed by form control; schedule errors found by msgspec go to the schedule kind."""
    out: dict[str, str] = {}
    for err in errors:
        key = err.field
        if key.startswith("schedule") or key == "on_demand":
            key = "schedule"
        elif key.startswith("result_emails"):
            key = "result_emails"
        elif key not in SCHEDULE_FIELDS and not key.startswith("param"):
            key = {"keep_history_days": "keep_history", "timeout_s": "timeout"}.get(key, key)
        message = err.message + (f" (accepted: {err.accepted})" if err.accepted else "")
        out[key] = f"{out[key]}; {message}" if key in out else message
    return out


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def upcoming(schedule: dict[str, Any], count: int, job_id: str = "") -> list[datetime]:
    """The next runs of a schedule as the form describes it, in its own time zone (``H``
    fields as this job's id picks them; a new job's are picked when it is saved)."""
    parsed = msgspec.convert(schedule, Schedule)
    local = zone(parsed.tz)
    compiled = compile_schedule(parsed, spread_key=job_id)
    return [t.astimezone(local) for t in compiled.upcoming(datetime.now(UTC), count)]


def type_groups(types: list[JobTypeInfo], q: str = "") -> list[tuple[str, list[JobTypeInfo]]]:
    """The job types by catalog family (families and members in title order), those matching
    ``q`` only: every word of it in the title, name, description or seed task, case ignored."""
    words = q.casefold().split()[:10]
    groups: dict[str, list[JobTypeInfo]] = {}
    for info in sorted(types, key=lambda t: (t.family or "Other", t.title.casefold())):
        text = " ".join(
            [info.title, info.name, info.description, *(s.title for s in info.seeds)]
        ).casefold()
        if all(word in text for word in words):
            groups.setdefault(info.family or "Other", []).append(info)
    return list(groups.items())
