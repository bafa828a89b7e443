"""Integration job types through the real services: the CLI defines and runs them, the
integration worker runs them against the demo school, history keeps their output."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(sis_database: str) -> str:
    """The stack runs on a database holding the demo school (and every service's schema)."""
    return sis_database


def wait_for_type(cli, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        types = {t["name"]: t for t in cli.json("job-types")}
        if name in types:
            return types[name]
        time.sleep(0.3)
    raise AssertionError(f"{name} never appeared in belltower job-types")


def run_now(cli, job_id: str) -> dict:
    result = cli.run("jobs", "run-now", job_id, "--wait", "--json", check=False, timeout=120)
    assert result.returncode in (0, 1), (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_exports_and_a_file_drop_run_through_the_integration_worker(
    stack, cli, tmp_batch_folder: Path
) -> None:
    info = wait_for_type(cli, "people.import_names")
    assert info["title"] == "Import Names" and info["pool"] == "integration"
    assert (
        info["params_schema"]["$defs"]["ImportNamesParams"]["properties"]["default_status"][
            "default"
        ]
        == "prospect"
    )
    listed = {t["name"]: t["title"] for t in cli.json("job-types")}
    for name, title in [
        ("exports.schoolmessenger", "SchoolMessenger"),
        ("lms.canvas_export", "Canvas LMS Export"),
        ("rostering.oneroster_csv_export", "OneRoster LMS Export"),
        ("lms.moodle_export", "Moodle LMS Export"),
        ("lms.blackboard_export", "Blackboard LMS Export"),
        ("lms.blackboard_load", "Load Data From Blackboard API"),
        ("lms.blackboard_user_extract", "Blackboard User Extract"),
        ("rostering.oneroster_rest_push", "OneRoster REST Push"),
        ("lms.moodle_attendance_import", "Moodle Attendance Import"),
        ("lms.edvance360_attendance_import", "Edvance360 Attendance Import"),
        ("people.jotform_import", "Auto Jotform Import"),
        ("people.element451_import", "Element451 Import"),
        ("hr.frontline_leave", "Frontline Leave"),
        ("messaging.communication_queue", "Communication Queue"),
        ("calc.class_rank_gpa", "Calculate Class Rank and GPA"),
        ("calc.auto_withdraw", "AutoWithdraw"),
    ]:
        assert listed[name] == title  # fmt: skip
    # Every job type the integration pool registers is advertised by the running worker.
    from belltower_integration.jobs import registry

    registered = {t.name: t.title for t in registry.for_pool("integration")}
    assert len(registered) > 90
    assert {n: listed.get(n) for n in registered} == registered

    refused = cli.run("jobs", "create", "--type", "calc.daily_attendance", "--title", "Daily attendance",
                      "--daily-at", "01:00", "--param", "absent_percent=0", check=False)  # fmt: skip
    assert refused.returncode == 2 and "absent_percent" in refused.stderr, refused.stderr
    gpa = cli.json("jobs", "create", "--type", "calc.class_rank_gpa", "--title", "Class rank nightly",
                   "--daily-at", "01:00")["id"]  # fmt: skip
    ranked = run_now(cli, gpa)
    assert ranked["status"] == "succeeded" and " added," in ranked["summary"], ranked
    assert run_now(cli, gpa)["summary"].startswith("Class rank and GPA: 0 added, 0 updated")

    export = cli.json("jobs", "create", "--type", "exports.schoolmessenger", "--title", "SchoolMessenger nightly",
                      "--daily-at", "02:00")["id"]  # fmt: skip
    run = run_now(cli, export)
    assert run["status"] == "succeeded", run
    with (tmp_batch_folder / "exports" / "schoolmessenger.csv").open(newline="") as f:
        people = len(list(csv.reader(f))) - 1
    assert (
        people > 2000
        and run["summary"] == f"exports/schoolmessenger.csv: {people} people, 0 skipped"
    )

    drop = tmp_batch_folder / "import_names" / "names.csv"
    drop.parent.mkdir()
    body = "first_name,last_name,email\nGrace,Hopper,ghopper@example.net\nKatherine,Johnson,kj@example.net\n"
    drop.write_text(body)
    os.utime(drop, (time.time() - 60, time.time() - 60))
    names = cli.json("jobs", "create", "--type", "people.import_names", "--title", "Import Names",
                     "--every", "15m", "--param", "default_status=prospect")["id"]  # fmt: skip
    first = run_now(cli, names)
    assert first["status"] == "succeeded", first
    assert "Import names: 2 processed, 0 skipped, 0 failed" in first["output_text"]
    assert not drop.exists()
    drop.write_text(body)
    os.utime(drop, (time.time() - 60, time.time() - 60))
    second = run_now(cli, names)
    assert "Import names: 0 processed, 2 skipped, 0 failed" in second["output_text"]
    shown = cli.run("runs", "show", second["run_id"], "--html").stdout
    assert "already in the SIS as N" in shown
    assert len(list((tmp_batch_folder / "import_names" / "done").iterdir())) == 2
