"""Limits per target as a user meets them, through the CLI and the HTTP API of the running
services: two jobs sharing a concurrency key run one at a time, the second waits (run-now says
queued and why), runs when the first finishes, and `jobs why`, `runs show` and the console say
it waited; the key is in the export, audited, and a bad one is refused naming the field."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.console import signed_in, wait_until

pytestmark = pytest.mark.slow

API = "/api/v1"


def test_jobs_sharing_a_key_run_one_at_a_time_and_say_they_waited(console_stack) -> None:
    cli, relay = console_stack.cli, f"relay-{uuid.uuid4().hex[:8]}"
    jobs = []
    for n in (1, 2):
        job = cli.json(
            "jobs", "create", "--type", "system.canary", "--title", f"Mailing {n} {relay}",
            "--on-demand", "--param", f"message={relay}", "--param", "sleep_s=2",
            "--concurrency-key", "smtp:{message}", "--concurrency-limit", "1",
        )  # fmt: skip
        jobs.append(job)
    assert (jobs[0]["concurrency_key"], jobs[0]["concurrency_limit"]) == ("smtp:{message}", 1)
    assert jobs[0]["concurrency_key_value"] == f"smtp:{relay}"

    with signed_in(console_stack.url, console_stack.admin) as (web, csrf):
        # Both at once through the API (a CLI process start can outlast a short run).
        first = web.post(f"{API}/jobs/{jobs[0]['id']}/run", headers=csrf).json()
        second = web.post(f"{API}/jobs/{jobs[1]['id']}/run", headers=csrf).json()
        assert first["state"] == "dispatched" and second["state"] == "waiting", (first, second)
        assert f"smtp:{relay} had 1 of 1 runs in flight" in second["note"]
        shown = web.get(f"{API}/jobs/{jobs[1]['id']}").json()
        assert (shown["concurrency_running"], shown["concurrency_waiting"]) == (1, 1)

        def finished(run_id: str) -> dict | None:
            found = web.get(f"{API}/runs/{run_id}")
            return (
                found.json() if found.status_code == 200 and found.json()["finished_at"] else None
            )

        done_first = wait_until(lambda: finished(first["run_id"]))
        done_second = wait_until(lambda: finished(second["run_id"]))
        assert done_second["started_at"] >= done_first["finished_at"]  # never both at once
        why = cli.run("jobs", "why", jobs[1]["id"]).stdout
        assert f"for smtp:{relay} (concurrency limit 1)" in why and "waited " in why
        assert "(waited " in cli.run("runs", "show", second["run_id"]).stdout
        run_page = web.get(f"/history/{second['run_id']}")
        assert "waited" in run_page.text and 'id="dispatched"' in run_page.text

        # The key travels in the export, a bad one is refused naming the field, changes are
        # audited, and `jobs show` and the console's job page say what the limit is.
        exported = cli.run("jobs", "export", "--format", "yaml").stdout
        assert "concurrency_key: smtp:{message}" in exported
        bad = cli.run(
            "jobs", "update", jobs[1]["id"], "--concurrency-key", "smtp:{nope}", check=False
        )  # fmt: skip
        assert bad.returncode == 2 and "concurrency_key:" in bad.stderr and "{nope}" in bad.stderr
        updated = cli.run("jobs", "update", jobs[1]["id"], "--concurrency-limit", "3").stdout
        assert f"limit:        3 at once of smtp:{relay} (0 running, 0 waiting)" in updated
        audit = web.get(API + "/audit", params={"action": "jobs.update"}).json()
        entry = next(e for e in audit["items"] if e["target"] == jobs[1]["id"])
        assert (entry["before"]["concurrency_limit"], entry["after"]["concurrency_limit"]) == (1, 3)
        refused = web.patch(
            f"{API}/jobs/{jobs[1]['id']}", json={"concurrency_limit": 0}, headers=csrf
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in refused.json()["errors"]] == ["concurrency_limit"]
        page = web.get(f"/jobs/{jobs[1]['id']}")
        assert f"smtp:{relay}" in page.text and 'id="concurrency"' in page.text
