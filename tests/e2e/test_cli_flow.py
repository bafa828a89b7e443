"""A school admin's first session: define jobs with the CLI, see them run, read their output.

The CLI goes through the console's HTTP API with the admin's API token (tests/e2e/conftest.py),
so who paused or ran a job is that user, and from where is the address the console saw."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.slow

JOB_FIELDS = {"id", "title", "type", "schedule", "priority", "next_run_at", "paused"}
RUN_FIELDS = {
    "run_id", "occurrence_id", "job_id", "status", "trigger", "priority", "scheduled_for", "dispatched_at",
    "started_at", "finished_at", "duration_ms", "output_text",
}  # fmt: skip


def iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, f"{value} has no offset"
    assert value.endswith("+00:00") or value[-6] in "+-", f"{value} is not ISO 8601 with an offset"
    return parsed


def test_bad_input_is_refused_naming_the_problem_and_nothing_is_stored(stack, cli) -> None:
    base = ["jobs", "create", "--type", "system.canary", "--title", "Bad"]
    cases = [
        (["--cron", "61 * * * *"], "cron", "Bad minute"),
        (
            ["--every", "1h", "--email", "ok@school.edu,not-an-address"],
            "result_emails[1]",
            "e.g. registrar@school.edu",
        ),
        (["--every", "1h", "--email-on", "sometimes"], "email_on", "always, failure or default"),
        (["--cron", "0 0 30 2 *"], "cron", "never occurs"),
        (["--every", "5s", "--tz", "Mars/Olympus"], "tz", "unknown time zone"),
        (["--every", "5s", "--param", "nonsense"], "param", "KEY=VALUE"),
        (["--every", "5s", "--param", "steps=many"], "param.steps", "not a whole number"),
        (["--every", "5s", "--param", "colour=red"], "param.colour", "has no parameter"),
        (
            ["--every", "5s", "--start", "2031-01-02T00:00", "--end", "2031-01-01T00:00"],
            "end",
            "never run",
        ),
        (["--once-at", "2001-01-01T00:00"], "schedule", "would never run"),
    ]
    for flags, field, words in cases:
        result = cli.run(*base, *flags, check=False)
        assert result.returncode == 2, (flags, result.stdout, result.stderr)
        assert f"{field}:" in result.stderr and words in result.stderr, (flags, result.stderr)
    unknown = cli.run(
        "jobs",
        "create",
        "--type",
        "grades.nonexistent",
        "--title",
        "X",
        "--every",
        "5s",
        check=False,
    )
    assert unknown.returncode == 2
    assert (
        "unknown job type 'grades.nonexistent'" in unknown.stderr
        and "system.canary" in unknown.stderr
    )
    assert cli.json("jobs", "list") == []


def test_a_job_every_second_runs_once_per_second(stack, cli) -> None:
    job = cli.json(
        "jobs",
        "create",
        "--type",
        "system.canary",
        "--title",
        "Heartbeat",
        "--every",
        "1s",
        "--priority",
        "700",
    )
    assert job.keys() >= JOB_FIELDS
    assert (job["title"], job["type"], job["priority"], job["paused"]) == (
        "Heartbeat",
        "system.canary",
        700,
        False,
    )
    iso(job["next_run_at"])
    time.sleep(6.5)
    cli.run("jobs", "pause", job["id"])
    time.sleep(1.5)  # the last dispatched runs finish

    runs = cli.json("runs", "list", "--job", job["id"])
    assert len(runs) >= 5
    assert all(r.keys() >= RUN_FIELDS for r in runs)
    assert len({r["occurrence_id"] for r in runs}) == len(runs) == len({r["run_id"] for r in runs})
    times = sorted(iso(r["scheduled_for"]) for r in runs)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times)), times
    assert {r["status"] for r in runs} == {"succeeded"}
    assert {r["trigger"] for r in runs} == {"schedule"}
    for r in runs:
        assert (
            iso(r["scheduled_for"])
            <= iso(r["dispatched_at"])
            <= iso(r["started_at"])
            <= iso(r["finished_at"])
        )

    shown = cli.json("jobs", "show", job["id"])
    assert shown["paused"] is True and shown["next_run_at"] is None
    assert shown["paused_by"] == "admin from 127.0.0.1"  # the token's user, never a claim

    # The ledger agrees with history, and says who paused the job.
    why = cli.json("jobs", "why", job["id"])
    ran = {e["occurrence_id"]: e for e in why["occurrences"] if e["state"] == "dispatched"}
    assert {r["occurrence_id"] for r in runs} <= ran.keys()
    assert {ran[r["occurrence_id"]]["run_status"] for r in runs} == {"succeeded"}
    told = cli.run("jobs", "why", job["id"]).stdout
    assert "PAUSED by admin from 127.0.0.1" in told and "ran: succeeded" in told
    listed = cli.run("jobs", "list").stdout
    assert "Heartbeat" in listed and "every second" in listed and "paused" in listed


def test_run_now_and_read_the_output(stack, cli, database_url) -> None:
    job = cli.json("jobs", "create", "--type", "system.canary", "--title", "Nightly canary", "--daily-at", "03:00",
                   "--weekdays", "mon,wed,fri", "--tz", "America/New_York", "--param", "message=hello")  # fmt: skip
    assert job["schedule"]["rule"] == {
        "kind": "daily",
        "times": ["03:00"],
        "weekdays": ["mon", "wed", "fri"],
    }
    assert iso(job["next_run_at"]).astimezone().utcoffset() is not None

    dispatched = cli.json("jobs", "run-now", job["id"])
    run = None
    for _ in range(100):
        result = cli.run("runs", "show", dispatched["run_id"], "--json", check=False)
        if result.returncode == 0 and '"finished_at": null' not in result.stdout:
            import json

            run = json.loads(result.stdout)
            break
        time.sleep(0.1)
    assert run is not None, "the manual run was never recorded"
    assert run["status"] == "succeeded" and run["trigger"] == "manual"
    assert run["requested_by"] == "admin"
    assert run["requested_from"] == "127.0.0.1"  # the address the console saw
    assert "canary hello" in run["output_text"]
    text = cli.run("runs", "show", dispatched["run_id"]).stdout
    assert "status:        succeeded" in text and "canary hello" in text
    assert f"from {run['requested_from']}" in text
    why = cli.run("jobs", "why", job["id"]).stdout
    assert "run now by" in why and dispatched["run_id"] in why
    # Had the scheduler missed the run's events, `jobs why` takes the outcome from history.
    from tests.helpers.faults import query

    forgotten = query(
        database_url,
        "UPDATE scheduler.occurrences SET run_status = NULL WHERE job_id = $1::uuid RETURNING id",
        job["id"],
    )
    assert len(forgotten) == 1
    [entry] = cli.json("jobs", "why", job["id"])["occurrences"]
    assert entry["run_status"] == "succeeded"

    waited = cli.run("jobs", "run-now", job["id"], "--wait")
    assert "status:        succeeded" in waited.stdout

    preview = cli.json("jobs", "preview", job["id"], "--from", "2030-11-01T00:00", "--count", "3")
    assert [p["at"] for p in preview] == [
        "2030-11-01T03:00:00-04:00",  # a Friday
        "2030-11-04T03:00:00-05:00",  # Monday, after the clocks went back
        "2030-11-06T03:00:00-05:00",
    ]

    cli.run("jobs", "delete", job["id"])
    gone = cli.run("jobs", "show", job["id"], check=False)
    assert gone.returncode == 1 and "no job with id" in gone.stderr


def test_a_failing_run_is_recorded_as_failed_and_filterable(stack, cli, mail_sink) -> None:
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", "Broken", "--every", "1h",
        "--param", "fail=true", "--email", "registrar@school.edu, it@school.edu", "--email-on", "failure",
    )  # fmt: skip
    assert job["result_emails"] == ["registrar@school.edu", "it@school.edu"]
    assert (
        "registrar@school.edu, it@school.edu (unsuccessful runs only)"
        in cli.run("jobs", "show", job["id"]).stdout
    )
    # A clean-up job chained on the failure, one second after it.
    cleanup = cli.json("jobs", "create", "--type", "system.canary", "--title", "Clean up after Broken",
                       "--once-at", "2099-01-01T00:00", "--after", f"{job['id']}:failed+1s")  # fmt: skip
    assert cleanup["after"] == {"job": job["id"], "on": "failed", "delay_s": 1.0}
    result = cli.run("jobs", "run-now", job["id"], "--wait", check=False)
    assert result.returncode == 1 and "status:        failed" in result.stdout
    mail = mail_sink.wait_for_sync(timeout=15)
    assert mail["Subject"] == "[Belltower] Failed: Broken"
    assert sorted(mail.envelope_to) == ["it@school.edu", "registrar@school.edu"]
    assert "Trigger:   Run now by " in mail.get_body(("plain",)).get_content()
    failed = cli.json("runs", "list", "--status", "failed")
    assert [r["job_id"] for r in failed] == [job["id"]]
    deadline = time.monotonic() + 20
    while not (
        chained := cli.json("runs", "list", "--job", cleanup["id"], "--status", "succeeded")
    ):
        assert time.monotonic() < deadline, cli.run("jobs", "why", cleanup["id"]).stdout
        time.sleep(0.2)
    assert [r["trigger"] for r in chained] == ["chained"]
    assert iso(chained[0]["scheduled_for"]) == iso(failed[0]["finished_at"]) + timedelta(seconds=1)
    why = cli.run("jobs", "why", cleanup["id"]).stdout
    assert f"chained after occurrence {failed[0]['occurrence_id']}" in why
    assert "canary asked to fail" in cli.json("runs", "show", failed[0]["run_id"])["output_text"]
    assert cli.json("runs", "list", "--status", "succeeded", "--job", job["id"]) == []
