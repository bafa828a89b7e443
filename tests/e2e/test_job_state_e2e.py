"""Job state as a user meets it, through the CLI and the HTTP API of the running services: a job
whose canary fails ends after exactly its max runs, mails one failing alert, and says so in
`jobs show`; a pause note is kept, shown on the console's job page and audited, and a hostile
one is refused with a problem document naming the field."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.console import signed_in, wait_until

pytestmark = pytest.mark.slow

API = "/api/v1"


def test_a_failing_job_alerts_once_and_ends_after_its_max_runs(console_stack) -> None:
    cli, title = console_stack.cli, f"Streak {uuid.uuid4().hex[:8]}"
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", title, "--every", "1s",
        "--param", "fail=true", "--overlap", "allow", "--email", "ops@school.edu",
        "--email-on", "failure", "--max-runs", "3", "--alert-after-failures", "2",
    )  # fmt: skip
    assert (job["max_runs"], job["alert_after_failures"]) == (3, 2)

    def ended() -> dict | None:
        shown = cli.json("jobs", "show", job["id"])
        return shown if shown["paused"] and shown["failure_streak"] == 3 else None

    shown = wait_until(ended)
    assert (shown["runs_counted"], shown["runs_left"]) == (3, 0)
    assert shown["paused_by"].startswith("belltower") and "max runs reached" in shown["pause_note"]
    runs = cli.json("runs", "list", "--job", job["id"])
    assert len(runs) == 3 and {r["status"] for r in runs} == {"failed"}

    text = cli.run("jobs", "show", job["id"]).stdout
    assert "max runs:     3 (0 left, 3 dispatched)" in text
    assert "failing:      3 in a row" in text
    assert "pause note:   max runs reached" in text

    def alert_mails() -> list:
        return [m for m in console_stack.mail.messages if f"Failing: {title}" in m["Subject"]]

    wait_until(lambda: len([m for m in console_stack.mail.messages if title in m["Subject"]]) >= 4)
    assert [m["Subject"] for m in alert_mails()] == [
        f"[Belltower] Failing: {title} failed 2 times in a row"
    ]
    resumed = cli.run("jobs", "resume", job["id"], check=False)
    assert resumed.returncode == 4 and "max_runs (3 of 3)" in resumed.stderr


def test_a_pause_note_is_kept_shown_audited_and_checked(console_stack) -> None:
    cli = console_stack.cli
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", "Noted", "--every", "1h"
    )  # fmt: skip
    bad = cli.run("jobs", "pause", job["id"], "--note", "two\nlines", check=False)
    assert bad.returncode == 2 and "note:" in bad.stderr and "500 characters" in bad.stderr
    done = cli.run("jobs", "pause", job["id"], "--note", "SIS upgrade until Monday")
    assert "SIS upgrade until Monday" in done.stdout
    assert "pause note:   SIS upgrade until Monday" in cli.run("jobs", "show", job["id"]).stdout
    updated = cli.run(
        "jobs", "update", job["id"], "--max-runs", "2", "--pause-after-failures", "4"
    ).stdout  # fmt: skip
    assert "max runs:     2 (2 left, 0 dispatched)" in updated
    assert "on failures:  pause after 4 in a row" in updated
    nothing = cli.run("jobs", "update", job["id"], "--max-runs", "-1", check=False)
    assert nothing.returncode == 2 and "max_runs:" in nothing.stderr
    why = cli.run("jobs", "why", job["id"]).stdout
    assert "why:      SIS upgrade until Monday" in why and "(SIS upgrade until Monday)" in why

    with signed_in(console_stack.url, console_stack.admin) as (web, csrf):
        page = web.get(f"/jobs/{job['id']}")
        assert "SIS upgrade until Monday" in page.text and 'id="max-runs"' in page.text
        for body in ({"note": "x" * 501}, {"note": "evil\u202e"}, {"note": 5}, {"reason": "x"}):
            refused = web.post(f"{API}/jobs/{job['id']}/pause", json=body, headers=csrf)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert [e["field"] for e in refused.json()["errors"]] == ["note"], refused.text
        audit = web.get(API + "/audit", params={"action": "jobs.pause"}).json()
        entry = next(e for e in audit["items"] if e["target"] == job["id"])
        assert entry["after"] == {"paused": True, "pause_note": "SIS upgrade until Monday"}
        assert web.get(f"{API}/jobs/{job['id']}").json()["pause_note"] == "SIS upgrade until Monday"
