"""Backfill and catch-up decisions as a user reaches them, against the running services: the
HTTP API (roles, refusals naming the field, the audit entry), the CLI (the same checks, exit
codes) and the runs history records with trigger backfill and who asked."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.slow

API = "/api/v1"


def client(console_stack, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=console_stack.url + API, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


def fields(response: httpx.Response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def test_a_backfill_through_the_api_and_the_cli_runs_each_occurrence_once(console_stack) -> None:
    cli = console_stack.cli
    admin = client(console_stack, cli.env["BELLTOWER_API_TOKEN"])
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    assert admin.post("/users", json={"username": name, "password": "viewer-pass-1", "role": "viewer"}).status_code == 201  # fmt: skip
    viewer = client(console_stack, admin.post("/tokens", json={"name": "v", "username": name}).json()["token"])  # fmt: skip
    job = admin.post(
        "/jobs",
        json={
            "type": "system.canary", "title": f"Balance Due {uuid.uuid4().hex[:6]}",
            "schedule": {"rule": {"kind": "cron", "expr": "0 * * * *"}, "tz": "UTC"},
            "params": {"message": "hello"}, "catch_up": "ask",
        },
    ).json()  # fmt: skip
    assert job["catch_up"] == "ask"
    now = datetime.now(UTC).replace(microsecond=0)
    body = {"from": (now - timedelta(hours=3)).isoformat(), "to": now.isoformat()}
    path = f"/jobs/{job['id']}/backfill"

    denied = viewer.post(path, json={**body, "dry_run": True})
    assert denied.status_code == 403, denied.text
    over = admin.post(path, json={**body, "max": 2})
    assert over.status_code == 422 and fields(over) == {"max"} and "more than 2" in over.text
    future = admin.post(path, json={**body, "to": (now + timedelta(days=1)).isoformat()})
    assert future.status_code == 422 and fields(future) == {"to"}
    assert fields(admin.post(path, json={"from": "yesterday", "to": body["to"]})) == {"from"}
    assert admin.get("/runs", params={"job_id": job["id"]}).json()["items"] == []

    shown = cli.json("jobs", "backfill", job["id"], "--from", body["from"], "--to", body["to"], "--dry-run")  # fmt: skip
    assert (shown["to_run"], shown["already"], shown["dry_run"]) == (3, 0, True)

    done = admin.post(path, json=body)
    assert done.status_code == 202 and done.json()["to_run"] == 3, done.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = admin.get("/runs", params={"job_id": job["id"]}).json()["items"]
        if len(runs) == 3 and all(r["finished_at"] for r in runs):
            break
        time.sleep(0.2)
    ran = sorted(datetime.fromisoformat(r["scheduled_for"]) for r in runs)
    assert ran == [datetime.fromisoformat(o["scheduled_for"]) for o in shown["occurrences"]]
    assert {(r["trigger"], r["requested_by"], r["status"]) for r in runs} == {
        ("backfill", console_stack.admin[0], "succeeded")
    }

    again = cli.run("jobs", "backfill", job["id"], "--from", body["from"], "--to", body["to"])
    assert "0 dispatched, 3 ran already" in again.stdout
    [entry, *_] = admin.get("/audit", params={"action": "jobs.backfill"}).json()["items"]
    assert (entry["target"], entry["actor"], entry["after"]["to_run"]) == (job["id"], console_stack.admin[0], 0)  # fmt: skip

    # Nothing awaits a decision for it: a decision is refused (409), a bad one names the field.
    decide = f"/jobs/{job['id']}/decision"
    assert admin.post(decide, json={"choice": "latest"}).status_code == 409
    assert fields(admin.post(decide, json={"choice": "maybe"})) == {"choice"}
    assert viewer.post(decide, json={"choice": "none"}).status_code == 403
    assert admin.get(decide).json() == []
    assert cli.run("jobs", "decide", job["id"], "all", check=False).returncode == 4


def test_the_console_shows_missed_runs_awaiting_a_decision_and_latest_runs_one(
    console_stack,
) -> None:
    """The ledger holds what the planner writes after downtime for a job with catch-up ask
    (tests/integration/test_backfill_and_decisions.py proves that part); here the banner, its
    answer through the page, and the one run the scheduler then dispatches."""
    import asyncio

    import asyncpg

    from belltower.events import occurrence_id

    admin = client(console_stack, console_stack.cli.env["BELLTOWER_API_TOKEN"])
    title = f"Balance Due {uuid.uuid4().hex[:6]}"
    job = admin.post(
        "/jobs",
        json={
            "type": "system.canary", "title": title, "catch_up": "ask",
            "schedule": {"rule": {"kind": "cron", "expr": "0 * * * *"}, "tz": "UTC"},
            "params": {"message": "hello"},
        },
    ).json()  # fmt: skip
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    missed = [hour - timedelta(hours=h) for h in (7, 6, 5, 4, 3, 2, 1)]

    async def downtime() -> None:
        db = await asyncpg.connect(console_stack.database_url)
        try:
            await db.executemany(
                "INSERT INTO scheduler.occurrences (id, job_id, scheduled_for, priority, trigger, "
                "state, reason, cause) VALUES ($1::uuid, $2::uuid, $3, 500, 'schedule', "
                "'awaiting', 'awaiting decision', 'catch_up')",
                [(occurrence_id(job["id"], t), job["id"], t) for t in missed],
            )
        finally:
            await db.close()

    asyncio.run(downtime())
    with httpx.Client(base_url=console_stack.url, timeout=20, follow_redirects=True) as browser:
        user, password = console_stack.admin
        csrf = browser.post(API + "/login", json={"username": user, "password": password}).json()["csrf_token"]  # fmt: skip
        listing = browser.get("/jobs").text
        assert f"7 runs of &#39;{title}&#39; were missed between" in listing
        page = browser.get(f"/jobs/{job['id']}").text
        assert "Run the latest" in page and "Skip all" in page
        answered = browser.post(
            f"/jobs/{job['id']}/decision",
            data={"csrf_token": csrf, "choice": "latest", "next": f"/jobs/{job['id']}"},
        )
        assert answered.status_code == 200 and "1 run(s) dispatched, 6 skipped" in answered.text
        assert "were missed" not in answered.text
        # The backfill page lists the range's runs before a confirm button dispatches them.
        shown = browser.post(
            f"/jobs/{job['id']}/backfill",
            data={"csrf_token": csrf, "from": missed[0].isoformat(), "to": hour.isoformat()},
        ).text
        assert "6 to run, 1 ran already" in shown and 'id="confirm-backfill"' in shown
    assert admin.post(f"/jobs/{job['id']}/decision", json={"choice": "all"}).status_code == 409
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = admin.get("/runs", params={"job_id": job["id"]}).json()["items"]
        if runs and runs[0]["finished_at"]:
            break
        time.sleep(0.2)
    assert [(datetime.fromisoformat(r["scheduled_for"]), r["requested_by"]) for r in runs] == [
        (missed[-1], user)
    ]
    [entry, *_] = admin.get("/audit", params={"action": "jobs.decide", "outcome": "ok"}).json()["items"]  # fmt: skip
    assert (entry["target"], entry["after"]["choice"], entry["after"]["skipped"]) == (job["id"], "latest", 6)  # fmt: skip
