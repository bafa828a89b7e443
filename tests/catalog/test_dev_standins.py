"""The stand-ins ``make dev`` serves: every example job its banner prints is accepted when
saved with make dev's outbound settings and runs to success against its stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from belltower.settings import get_settings
from belltower_dev.devstack import example_arguments, standin_lines
from belltower_dev.standins import fleet
from belltower_integration.jobs import registry
from belltower_scheduler import catalog
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import keep_current_sections


def forget_settings() -> None:
    get_settings.cache_clear()
    catalog._fences.cache_clear()


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[fleet.StandIn]]:
    with fleet.running() as running:
        for name, value in fleet.environment(running).items():
            monkeypatch.setenv(name, value)
        forget_settings()  # the save-time fences read the process's settings, once
        try:
            yield running
        finally:
            monkeypatch.undo()
            forget_settings()


async def test_each_example_job_of_the_banner_is_accepted_and_runs_against_its_stand_in(
    run_job: JobRunner, standins: list[fleet.StandIn]
) -> None:
    await keep_current_sections(await run_job.db.pool(), 12)
    assert {s.job_type for s in standins} == {
        "lms.canvas_export", "lms.moodle_export", "lms.blackboard_export",
        "lms.schoology_export", "rostering.oneroster_rest_push", "rostering.edfi_sync",
    }  # fmt: skip
    for s in standins:
        kind = registry.get(s.job_type)
        assert kind is not None, s.job_type
        # As the CLI sends them: each `--param k=v` value a string, converted by the schema.
        saved = validate_params(kind.info(), {k: str(v) for k, v in s.params.items()})
        ran = await run_job(s.job_type, saved, occurrence_id=f"occ-{s.job_type}")
        assert ran.status == "succeeded", (s.name, ran.error)
        assert "nothing changed" not in ran.summary, (s.name, ran.summary)
        for secret in s.secrets.values():
            assert secret not in ran.text, s.name


@pytest.mark.unit
def test_the_banner_names_each_stand_in_and_a_job_to_create() -> None:
    one = fleet.StandIn(
        "Moodle", "http://127.0.0.1:5000", {"BELLTOWER_SECRET_MOODLE_TOKEN": "t"},
        "lms.moodle_export", {"base_url": "http://127.0.0.1:5000"},
    )  # fmt: skip
    assert example_arguments(one) == (
        '--title "Moodle (stand-in)" --on-demand --param base_url=http://127.0.0.1:5000'
    )
    lines = standin_lines([one])
    assert any("Moodle" in line and "http://127.0.0.1:5000" in line for line in lines)
    assert any("jobs create --type lms.moodle_export --title" in line for line in lines)
    assert standin_lines([]) == []
    env = fleet.environment([one])
    assert env["BELLTOWER_SECRET_MOODLE_TOKEN"] == "t"
    assert env["BELLTOWER_OUTBOUND_ALLOW_HOSTS"] == '["127.0.0.1"]'
