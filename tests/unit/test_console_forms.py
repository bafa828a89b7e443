"""The console's job form: fields generated from a parameter JSON Schema, and read back."""

from __future__ import annotations

import msgspec

from belltower.api import JobTypeInfo
from belltower_console.forms import by_field, param_fields, read_form


class Params(msgspec.Struct):
    school: str
    days: int = 7
    ratio: float = 0.5
    notify: bool = True
    grades: list[int] = []
    mode: str = msgspec.field(default="email")


INFO = JobTypeInfo(
    name="test.kind",
    pool="notifier",
    title="Test",
    description="",
    params_schema=msgspec.json.schema(Params),
)


def test_controls_follow_the_schema() -> None:
    controls = {f.name: f for f in param_fields(INFO)}
    assert controls["school"].required and controls["school"].control == "text"
    assert controls["days"].control == "number" and controls["days"].step == "1"
    assert controls["ratio"].step == "any"
    assert controls["notify"].control == "checkbox"
    assert "commas" in controls["grades"].help
    assert "Default: 7." in controls["days"].help


def test_reading_the_form_builds_a_document_and_leaves_defaults_out() -> None:
    form = {
        "title": " Absences ",
        "kind": "daily",
        "daily_at": "07:30",
        "tz": "America/Chicago",
        "priority": "600",
        "keep_history": "forever",
        "param.school": "North",
        "param.days": "7",
        "param.grades": "9, 10",
    }
    doc, errors = read_form(form, ["mon", "fri"], INFO)
    assert errors == []
    assert doc["schedule"]["rule"] == {
        "kind": "daily",
        "times": ["07:30"],
        "weekdays": ["mon", "fri"],
    }
    assert doc["priority"] == 600 and doc["keep_history_days"] is None
    assert doc["params"] == {"school": "North", "notify": "false", "grades": "9, 10"}


def test_form_errors_are_keyed_by_the_control_they_belong_to() -> None:
    form = {
        "title": "x",
        "kind": "cron",
        "cron": "61 * * * *",
        "tz": "Nowhere/Town",
        "priority": "high",
        "timeout": "soon",
    }
    _, errors = read_form(form, [], INFO)
    keys = by_field(errors)
    assert set(keys) == {"tz", "priority", "timeout"}
    _, errors = read_form({**form, "tz": "UTC"}, [], INFO)
    assert "not a valid cron expression" in by_field(errors)["cron"]
    assert "whole number" in keys["priority"]


def test_the_form_creates_and_shows_an_on_demand_job() -> None:
    from datetime import UTC, datetime

    from belltower.api import Job
    from belltower.schedule import OnDemand, Schedule
    from belltower_console.forms import KINDS, form_can_express, upcoming, values_of

    assert "on_demand" in KINDS
    form = {"title": "Import after download", "kind": "on_demand", "tz": "UTC", "param.school": "N"}
    doc, errors = read_form(form, [], INFO)
    assert errors == []
    assert doc["schedule"]["rule"] == {"kind": "on_demand"}
    assert upcoming(doc["schedule"], 10) == []

    now = datetime(2026, 9, 1, tzinfo=UTC)
    job = Job(
        id="3f2a0c1e-0000-4000-8000-000000000002", title="t", type="test.kind", pool="notifier",
        params={"school": "N"}, schedule=Schedule(rule=OnDemand()), schedule_text="on demand",
        priority=500, paused=False, next_run_at=None, keep_history_days=30, timeout_s=None,
        type_installed=True, created_at=now, updated_at=now,
    )  # fmt: skip
    assert form_can_express(job.schedule)
    assert values_of(job, INFO)["kind"] == "on_demand"

    # A start date left in the form is refused, naming the field, not silently dropped.
    doc, errors = read_form({**form, "start": "2030-01-01T07:00"}, [], INFO)
    assert [e.field for e in errors] == ["start"]
    assert "does not apply to --on-demand" in by_field(errors)["start"]


def test_the_form_sets_and_clears_max_runs_and_the_failure_counts() -> None:
    form = {"title": "x", "kind": "every", "every": "1h", "tz": "UTC"}
    doc, errors = read_form(
        {**form, "max_runs": "12", "alert_after_failures": "3", "pause_after_failures": ""},
        [],
        INFO,
    )
    assert errors == []
    assert (doc["max_runs"], doc["alert_after_failures"], doc["pause_after_failures"]) == (
        12,
        3,
        None,
    )
    # A post without the fields (an older form, a script) leaves the job's counts as they are.
    doc, _ = read_form(form, [], INFO)
    assert not {"max_runs", "alert_after_failures", "pause_after_failures"} & set(doc)
    for bad in ("0", "-1", "2.5", "1e3", "١٢", "10001"):
        _, errors = read_form({**form, "max_runs": bad, "pause_after_failures": bad}, [], INFO)
        keys = by_field(errors)
        assert set(keys) == {"max_runs", "pause_after_failures"}, bad
        assert "whole number from 1 to 10,000" in keys["max_runs"]
