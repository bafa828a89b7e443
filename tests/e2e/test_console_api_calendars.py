"""The HTTP API's calendars, `why` and schedule preview against the real services: what the CLI
does, each with its validation, role check, audit entry and problem document."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest

from tests.e2e.test_console_api import canary, token_client

pytestmark = pytest.mark.slow

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Belltower tests//EN
BEGIN:VEVENT
UID:winter@example.org
SUMMARY:Winter break
DTSTART;VALUE=DATE:20261221
DTEND;VALUE=DATE:20261224
END:VEVENT
END:VCALENDAR
"""


def _audit(admin: httpx.Client, action: str, target: str) -> list[dict]:
    found = admin.get("/audit", params={"action": action, "q": target, "limit": 50}).json()
    return [e for e in found["items"] if e["target"] == target]


@pytest.fixture(scope="module")
def users(console_stack) -> Iterator[dict[str, httpx.Client]]:  # type: ignore[no-untyped-def]
    """A client per role, each with a token an admin made for a user of this module."""
    admin = token_client(console_stack.url, console_stack.cli.env["BELLTOWER_API_TOKEN"])
    clients = {"admin": admin}
    for role in ("viewer", "operator", "editor"):
        name = f"cal-{role}"
        made = admin.post(
            "/users", json={"username": name, "password": f"{role}-password-1", "role": role}
        )
        assert made.status_code == 201, made.text
        token = admin.post("/tokens", json={"name": "t", "username": name}).json()["token"]
        clients[role] = token_client(console_stack.url, token)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def calendar(users: dict[str, httpx.Client]) -> Iterator[str]:
    name = "api-cal-2026"
    made = users["editor"].post(
        "/calendars",
        json={"name": name, "description": "API tests", "days": [{"day": "2026-11-26"}]},
    )
    assert made.status_code == 201, made.text
    assert made.headers["location"] == f"/api/v1/calendars/{name}"
    yield name
    users["editor"].delete(f"/calendars/{name}")


def test_calendars_crud_days_and_import_are_audited(
    calendar: str, users: dict[str, httpx.Client]
) -> None:
    editor, admin = users["editor"], users["admin"]
    listed = users["viewer"].get("/calendars").json()
    assert [(c["name"], c["days"]) for c in listed if c["name"] == calendar] == [(calendar, 1)]
    added = editor.post(
        f"/calendars/{calendar}/days", json={"days": [{"day": "2026-11-27", "label": "Friday"}]}
    )
    assert added.status_code == 200, added.text
    assert [d["day"] for d in added.json()["days"]] == ["2026-11-26", "2026-11-27"]
    imported = editor.post(
        f"/calendars/{calendar}/import",
        json={"ics": ICS, "replace": True, "since": "2026-09-01"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"] == 3
    shown = users["viewer"].get(f"/calendars/{calendar}").json()
    assert [(d["day"], d["label"]) for d in shown["days"]] == [
        ("2026-12-21", "Winter break"),
        ("2026-12-22", "Winter break"),
        ("2026-12-23", "Winter break"),
    ]
    [created] = _audit(admin, "calendars.create", calendar)
    assert (created["actor"], created["role"], created["outcome"]) == ("cal-editor", "editor", "ok")
    [days] = _audit(admin, "calendars.add_days", calendar)
    assert [d["day"] for d in days["after"]] == ["2026-11-26", "2026-11-27"]
    [ics] = _audit(admin, "calendars.import", calendar)
    assert ics["detail"] == "3 days given, replacing" and len(ics["before"]) == 2
    removed = editor.post(
        f"/calendars/{calendar}/remove-days", json={"days": ["2026-12-22", "2030-01-01"]}
    )
    assert removed.status_code == 200, removed.text
    assert [d["day"] for d in removed.json()["days"]] == ["2026-12-21", "2026-12-23"]
    [taken] = _audit(admin, "calendars.remove_days", calendar)
    assert taken["detail"] == "1 of 2 days removed"
    changed = editor.patch(f"/calendars/{calendar}", json={"description": "Changed"})
    assert changed.status_code == 200 and changed.json()["description"] == "Changed"
    [update] = _audit(admin, "calendars.update", calendar)
    assert (update["before"], update["after"]) == (
        {"description": "API tests"},
        {"description": "Changed"},
    )
    assert (
        users["operator"].patch(f"/calendars/{calendar}", json={"description": "x"}).status_code
        == 403
    )
    # Created on import when asked; a calendar in use is not deleted.
    fresh = editor.post(
        "/calendars/api-cal-new/import", json={"ics": ICS, "create": True, "since": "2026-09-01"}
    )
    assert fresh.status_code == 200, fresh.text
    job = editor.post(
        "/jobs", json=canary("On a calendar", schedule={"rule": {"kind": "every", "seconds": 3600},
                                                        "calendar": "api-cal-new"})
    ).json()  # fmt: skip
    # The job's preview skips its calendar's non-school days, as `belltower jobs preview` does.
    shown = editor.get(
        f"/jobs/{job['id']}/preview", params={"from": "2026-12-23T22:00:00Z", "count": 2}
    ).json()
    assert shown["occurrences"][0]["skipped"] is True, shown
    assert [t[:19] for t in shown["times"]] == ["2026-12-24T00:00:00", "2026-12-24T01:00:00"]
    in_use = editor.delete("/calendars/api-cal-new")
    assert in_use.status_code == 422 and "is used by 1 job" in in_use.json()["detail"]
    assert editor.delete(f"/jobs/{job['id']}").status_code == 204
    assert editor.delete("/calendars/api-cal-new").status_code == 204
    assert _audit(admin, "calendars.delete", "api-cal-new")[0]["before"]["name"] == "api-cal-new"


def test_calendar_refusals_name_the_field_and_write_nothing(
    calendar: str, users: dict[str, httpx.Client]
) -> None:
    editor = users["editor"]
    cases = [
        (editor.post("/calendars", json={"name": "bad name!"}), 422, "name"),
        (editor.post("/calendars", json={"name": calendar}), 422, "name"),
        (editor.post("/calendars", json={"name": "x", "extra": 1}), 422, "body"),  # names `extra`
        (editor.post("/calendars", json={"name": "x", "description": "a\x00b"}), 422, "description"),
        (editor.post(f"/calendars/{calendar}/days", json={"days": [{"day": "soon"}]}), 422,
         "days[0].day"),
        (editor.post(f"/calendars/{calendar}/import", json={"ics": "not a calendar"}), 422, "ics"),
        (editor.post(f"/calendars/{calendar}/import", json={"ics": ICS, "horizon_days": 0}), 422,
         "horizon_days"),
        (editor.post("/calendars/nope/days", json={"days": [{"day": "2026-12-01"}]}), 404, None),
        (editor.get("/calendars/nope"), 404, None),
        (editor.get("/calendars/-dash-first"), 422, "name"),
    ]  # fmt: skip
    for response, status, field in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        if field:
            assert field in {e["field"] for e in response.json()["errors"]}, response.text
    assert [d["day"] for d in editor.get(f"/calendars/{calendar}").json()["days"]] == ["2026-11-26"]
    for role in ("viewer", "operator"):
        refused = users[role].post(f"/calendars/{calendar}/days", json={"days": []})
        assert refused.status_code == 403, refused.text
        assert "needs the editor role" in refused.json()["detail"]
        assert users[role].delete(f"/calendars/{calendar}").status_code == 403
    denied = (
        users["admin"]
        .get("/audit", params={"action": "calendars.", "outcome": "denied", "actor": "cal-viewer"})
        .json()["items"]
    )
    assert {e["action"] for e in denied} >= {"calendars.add_days", "calendars.delete"}


def test_why_of_a_job_and_a_schedule_preview_without_one(users: dict[str, httpx.Client]) -> None:
    editor, viewer = users["editor"], users["viewer"]
    job = editor.post("/jobs", json=canary("Why me")).json()
    assert editor.post(f"/jobs/{job['id']}/pause").status_code == 200
    why = viewer.get(f"/jobs/{job['id']}/why", params={"limit": 10})
    assert why.status_code == 200, why.text
    body = why.json()
    assert (body["job_id"], body["paused"]) == (job["id"], True)
    assert body["pauses"][0]["paused_by"] == "cal-editor"
    bad = viewer.get(f"/jobs/{job['id']}/why", params={"limit": 0})
    assert bad.status_code == 422 and "limit" in {e["field"] for e in bad.json()["errors"]}
    assert viewer.get(f"/jobs/{job['id']}/why", params={"from": "soon"}).status_code == 422
    missing = viewer.get("/jobs/00000000-0000-4000-8000-000000000000/why")
    assert missing.status_code == 404
    editor.delete(f"/jobs/{job['id']}")

    preview = viewer.post(
        "/schedule/preview",
        json={
            "schedule": {"rule": {"kind": "cron", "expr": "0 */6 * * *"},
                         "tz": "America/New_York", "window": {"start": "05:00", "end": "13:00"}},
            "from": "2026-03-07T20:00:00-05:00",
            "count": 2,
        },
    )  # fmt: skip
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert [(o["at"], o["skipped"], o["reason"]) for o in shown["occurrences"]] == [
        ("2026-03-08T00:00:00-05:00", True, "outside window"),
        ("2026-03-08T06:00:00-04:00", False, None),
        ("2026-03-08T12:00:00-04:00", False, None),
    ]
    on_demand = viewer.post("/schedule/preview", json={"schedule": {"rule": {"kind": "on_demand"}}})
    assert on_demand.json()["on_demand"] is True and on_demand.json()["occurrences"] == []
    for body, field in [
        ({"schedule": {"rule": {"kind": "cron", "expr": "0 0 30 2 *"}}}, "cron"),
        ({"schedule": {"rule": {"kind": "every", "seconds": 60}}, "count": 0}, "count"),
        ({"schedule": {"rule": {"kind": "every", "seconds": 60}}, "from": "2026-01-01T00:00"},
         "from"),
        ({"schedule": {"rule": {"kind": "nope"}}}, "schedule.rule"),
    ]:  # fmt: skip
        refused = viewer.post("/schedule/preview", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert any(field in e["field"] for e in refused.json()["errors"]), refused.text
    unknown = viewer.post(
        "/schedule/preview",
        json={"schedule": {"rule": {"kind": "every", "seconds": 60}, "calendar": "nope"}},
    )
    assert unknown.status_code == 404


def test_a_calendar_what_if_lists_the_runs_it_would_skip_move_and_add(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    editor, viewer = users["editor"], users["viewer"]
    name = "api-whatif"
    made = editor.post("/calendars", json={"name": name, "days": [{"day": "2026-12-02"}]})
    assert made.status_code == 201, made.text
    mornings = {
        "kind": "daily",
        "times": ["08:00"],
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    }
    skipper = editor.post(
        "/jobs",
        json=canary("What-if skip", schedule={"rule": mornings, "tz": "UTC", "calendar": name}),
    ).json()
    mover = editor.post(
        "/jobs",
        json=canary(
            "What-if move",
            schedule={
                "rule": mornings, "tz": "UTC", "calendar": name,
                "on_non_school_day": "next_school_day",
            },
        ),
    ).json()  # fmt: skip
    try:
        body = {
            "add_days": [{"day": "2026-11-30", "label": "Snow day"}],
            "remove_days": ["2026-12-02"],
            "from": "2026-11-27T12:00:00Z",
            "days": 7,
        }
        diff = viewer.post(f"/calendars/{name}/diff", json=body)
        assert diff.status_code == 200, diff.text
        found = diff.json()
        assert found["days_added"] == ["2026-11-30"] and found["days_removed"] == ["2026-12-02"]
        assert (found["jobs"], found["jobs_affected"]) == (2, 2)
        got = {(c["job_id"], c["change"], c["scheduled_for"][:10]) for c in found["changes"]}
        assert (skipper["id"], "skipped", "2026-11-30") in got
        assert (skipper["id"], "added", "2026-12-02") in got
        assert (mover["id"], "moved", "2026-11-30") in got
        # Nothing was saved: the calendar keeps its day.
        assert [d["day"] for d in viewer.get(f"/calendars/{name}").json()["days"]] == ["2026-12-02"]
        with_ics = editor.post(
            f"/calendars/{name}/diff",
            json={
                "ics": ICS,
                "replace": True,
                "ics_since": "2026-09-01",
                "from": "2026-12-18T00:00:00Z",
            },
        )
        assert with_ics.status_code == 200, with_ics.text
        assert with_ics.json()["days_added"] == ["2026-12-21", "2026-12-22", "2026-12-23"]
        for bad, field, status in (
            ({"days": 0}, "days", 422),
            ({"ics": "not a calendar"}, "ics", 422),
            ({"add_days": [{"day": "someday"}]}, "add_days[0].day", 422),
            ({"colour": "red"}, "body", 422),
        ):
            refused = editor.post(f"/calendars/{name}/diff", json=bad)
            assert refused.status_code == status, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert [e["field"] for e in refused.json()["errors"]] == [field], refused.text
        missing = editor.post("/calendars/no-such-cal/diff", json={"days": 3})
        assert missing.status_code == 404
        today = date.today()
        monday = today + timedelta(days=14 - today.weekday())
        cli = console_stack.cli
        shown = cli.json("calendars", "diff", name, "--add-day", monday.isoformat(), "--days", "21")
        assert (skipper["id"], "skipped") in {(c["job_id"], c["change"]) for c in shown["changes"]}
        nothing = cli.run("calendars", "diff", name, check=False)
        assert nothing.returncode == 2 and "--add-day" in nothing.stderr
    finally:
        for job in (skipper, mover):
            editor.delete(f"/jobs/{job['id']}")
        editor.delete(f"/calendars/{name}")
