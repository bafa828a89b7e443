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
