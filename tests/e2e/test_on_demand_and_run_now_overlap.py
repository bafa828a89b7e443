"""A job that runs only on demand or after another one, and run-now meeting a run still going,
through the CLI against the real services."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.e2e.conftest import BIN

pytestmark = pytest.mark.slow


def test_an_on_demand_job_runs_by_hand_and_after_its_upstream(stack, cli) -> None:
    upstream = cli.json("jobs", "create", "--type", "system.canary", "--title", "Download",
                        "--on-demand")  # fmt: skip
    follower = cli.json("jobs", "create", "--type", "system.canary", "--title", "Import",
                        "--on-demand", "--after", f"{upstream['id']}:succeeded")  # fmt: skip
    assert follower["schedule"]["rule"] == {"kind": "on_demand"}
    assert follower["next_run_at"] is None and follower["after"]["job"] == upstream["id"]

    shown = cli.run("jobs", "show", follower["id"]).stdout
    assert "schedule:     on demand only (run now, or after its upstream job)" in shown
    assert "next run:     on demand or after upstream" in shown
    listed = cli.run("jobs", "list").stdout
    assert "on demand only" in listed and "on demand or after upstream" in listed
    preview = cli.run("jobs", "preview", follower["id"]).stdout
    assert "no scheduled occurrences" in preview
    assert f"or when its upstream job {upstream['id']} succeeds" in preview
    assert cli.json("jobs", "preview", follower["id"]) == []
    assert "active, on demand" in cli.run("jobs", "why", follower["id"]).stdout

    # Refused with other schedule flags: exit 2, naming the flag, nothing stored.
    bad = cli.run("jobs", "create", "--type", "system.canary", "--title", "Bad", "--on-demand",
                  "--daily-at", "07:00", check=False)  # fmt: skip
    assert bad.returncode == 2 and "on_demand: cannot be combined with --daily-at" in bad.stderr
    assert "Bad" not in cli.run("jobs", "list").stdout

    ran = cli.run("jobs", "run-now", upstream["id"], "--wait")
    assert "status:        succeeded" in ran.stdout
    deadline = time.monotonic() + 30
    while not (
        chained := cli.json("runs", "list", "--job", follower["id"], "--status", "succeeded")
    ):
        assert time.monotonic() < deadline, cli.run("jobs", "why", follower["id"]).stdout
        time.sleep(0.2)
    assert [r["trigger"] for r in chained] == ["chained"]

    # Export and import round-trip it unchanged.
    exported = cli.run("jobs", "export", "--format", "yaml").stdout
    assert "kind: on_demand" in exported
    result = subprocess.run(
        [str(BIN / "belltower"), "jobs", "import", "-", "--dry-run", "--json"],
        input=exported, env=cli.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    imported = json.loads(result.stdout)
    assert imported["errors"] == []
    assert {i["action"] for i in imported["items"]} == {"unchanged"}
    assert {i["id"] for i in imported["items"]} == {upstream["id"], follower["id"]}


def test_run_now_while_a_run_is_going_is_refused_with_how_to_override(stack, cli) -> None:
    job = cli.json("jobs", "create", "--type", "system.canary", "--title", "Slow sync",
                   "--on-demand", "--param", "sleep_s=6")  # fmt: skip
    first = cli.json("jobs", "run-now", job["id"])

    refused = cli.run("jobs", "run-now", job["id"], check=False)
    assert refused.returncode == 4, (refused.stdout, refused.stderr)
    assert (
        f"error: not run: run {first['run_id']} of this job (manual, dispatched " in refused.stderr
    )
    assert "its overlap policy is skip" in refused.stderr
    assert f"belltower jobs run-now --force {job['id']}" in refused.stderr
    why = cli.run("jobs", "why", job["id"]).stdout
    assert "run now by" in why and f"refused: run {first['run_id']} of this job" in why
    assert "(overlap: skip)" in why

    forced = cli.run("jobs", "run-now", job["id"], "--force", "--wait", timeout=90)
    assert "status:        succeeded" in forced.stdout
    runs = cli.json("runs", "list", "--job", job["id"])
    assert len(runs) == 2 and {r["trigger"] for r in runs} == {"manual"}
