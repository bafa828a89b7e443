"""The on-demand schedule kind: no occurrence of its own, never "could never run", and every
setting that would bound or filter occurrences refused, naming the field."""

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from typer.testing import CliRunner

from belltower.api import After, Job, JobDocument
from belltower.cli import app
from belltower.cli.jobs import _next_run_text
from belltower.errors import InvalidInput
from belltower.schedule import (
    ON_DEMAND_TEXT,
    Daily,
    OnDemand,
    Schedule,
    ScheduleFlags,
    Window,
    compile_schedule,
    describe,
    schedule_decoder,
    schedule_encoder,
)
from belltower.transfer import documents_of, dump, load

NOW = datetime(2026, 9, 1, 7, 30, tzinfo=UTC)


def test_an_on_demand_schedule_produces_no_occurrence_by_itself() -> None:
    compiled = compile_schedule(Schedule(rule=OnDemand(), tz="Europe/Paris"))
    assert compiled.next_runnable(NOW) == (None, [])
    assert compiled.next_after(NOW - timedelta(days=3650)) is None
    assert compiled.preview(NOW, 10) == []
    assert compiled.upcoming(NOW, 10) == []
    assert list(compiled.occurrences(NOW, explain=True)) == []


def test_it_is_described_as_on_demand_and_decodes_from_its_document() -> None:
    schedule = Schedule(rule=OnDemand())
    assert (
        describe(schedule)
        == ON_DEMAND_TEXT
        == "on demand only (run now, or after its upstream job)"
    )
    encoded = schedule_encoder.encode(schedule)
    assert json.loads(encoded)["rule"] == {"kind": "on_demand"}
    assert schedule_decoder.decode(encoded) == schedule
    # A hand-written document needs only the kind.
    assert schedule_decoder.decode(b'{"rule": {"kind": "on_demand"}}').rule == OnDemand()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start": NOW}, "start"),
        ({"end": NOW}, "end"),
        ({"window": Window(start="07:00", end="08:00")}, "window"),
        ({"weekdays": ["mon"]}, "weekdays"),
        ({"jitter_s": 30}, "jitter"),
        ({"dst_gap": "skip"}, "dst_gap"),
        ({"dst_repeat": "both"}, "dst_repeat"),
        ({"calendar": "district"}, "calendar"),
        ({"on_non_school_day": "next_school_day"}, "on_non_school_day"),
    ],
)
def test_settings_that_filter_occurrences_are_refused_for_it(changes: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        compile_schedule(Schedule(rule=OnDemand(), **changes))
    assert err.value.field == field
    assert "on-demand" in err.value.reason and "--on-demand alone" in (err.value.accepted or "")


def test_build_schedule_on_demand_and_its_refusals() -> None:
    built = ScheduleFlags(tz="America/Chicago", on_demand=True).build()
    assert built == Schedule(rule=OnDemand(), tz="America/Chicago")
    with pytest.raises(InvalidInput) as err:
        ScheduleFlags(every="5m", on_demand=True).build()
    assert err.value.field == "on_demand" and "--every" in err.value.reason
    with pytest.raises(InvalidInput) as err:
        ScheduleFlags(start="2030-01-01", on_demand=True).build()
    assert err.value.field == "start"
    with pytest.raises(InvalidInput) as err:
        ScheduleFlags(tz="Nowhere/Land", on_demand=True).build()
    assert err.value.field == "tz"


def test_the_sites_default_calendar_does_not_stop_an_on_demand_job(monkeypatch) -> None:
    built = ScheduleFlags(calendar="district", default_calendar="district", on_demand=True).build()
    assert built.calendar is None
    with pytest.raises(InvalidInput) as err:  # another calendar was asked for on purpose
        ScheduleFlags(calendar="other", default_calendar="district", on_demand=True).build()
    assert err.value.field == "calendar"
    # The CLI reads the site's default from BELLTOWER_DEFAULT_CALENDAR, as --calendar's default.
    monkeypatch.setenv("BELLTOWER_DEFAULT_CALENDAR", "district")
    runner = CliRunner()
    shown = runner.invoke(app, ["schedule", "preview", "--on-demand", "--calendar", "district"])
    assert shown.exit_code == 0, shown.output
    refused = runner.invoke(app, ["schedule", "preview", "--on-demand", "--calendar", "other"])
    assert refused.exit_code == 2 and "error: calendar: " in refused.output


def test_schedule_preview_says_it_runs_only_on_demand() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["schedule", "preview", "--on-demand"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{ON_DEMAND_TEXT}: no scheduled occurrences.")
    assert "only when started by hand (`belltower jobs run-now" in result.output
    as_json = json.loads(
        runner.invoke(app, ["schedule", "preview", "--on-demand", "--json"]).output
    )
    assert as_json == []  # a list, as for every schedule: none to list


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--every", "5m"], "on_demand"),
        (["--once-at", "2030-01-01T07:00"], "on_demand"),
        (["--window", "07:00-08:00"], "window"),
        (["--end", "2030-01-01"], "end"),
        (["--jitter", "5m"], "jitter"),
    ],
)
def test_schedule_preview_refuses_on_demand_with_other_flags(flags: list[str], field: str) -> None:
    result = CliRunner().invoke(app, ["schedule", "preview", "--on-demand", *flags])
    assert result.exit_code == 2
    assert f"error: {field}: " in result.output and "--on-demand alone" in result.output


def _job(**changes) -> Job:
    job = Job(
        id="3f2a0c1e-0000-4000-8000-000000000002", title="import after download",
        type="system.canary", pool="p", params={}, schedule=Schedule(rule=OnDemand()),
        schedule_text=ON_DEMAND_TEXT, priority=500, paused=False, next_run_at=None,
        keep_history_days=30, timeout_s=None, type_installed=True, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    for name, value in changes.items():
        setattr(job, name, value)
    return job


def test_an_on_demand_job_round_trips_through_export_and_import() -> None:
    after = After(job="3f2a0c1e-0000-4000-8000-000000000001", on="succeeded", delay_s=600)
    job = _job(after=after)
    for fmt in ("yaml", "json"):
        text = dump(documents_of([job]), fmt)  # type: ignore[arg-type]
        assert "on_demand" in text
        [again] = load(text)
        doc = msgspec.convert(again, JobDocument)
        assert (doc.id, doc.schedule, doc.after) == (job.id, Schedule(rule=OnDemand()), after)


def test_lists_show_on_demand_instead_of_a_next_run() -> None:
    job = _job()
    assert _next_run_text(job) == "on demand"
    job.after = After(job="3f2a0c1e-0000-4000-8000-000000000001")
    assert _next_run_text(job) == "on demand or after upstream"
    job.schedule = Schedule(rule=Daily(times=["07:00"]))
    assert _next_run_text(job) == "-"
