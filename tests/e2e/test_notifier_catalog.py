"""The notifier catalog through the real services: listed by the CLI, run by the worker, mailed."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(sis_database: str) -> str:
    """The stack runs on a database holding the demo school."""
    return sis_database


def bursar_emails(database_url: str) -> set[str]:
    async def go() -> set[str]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                """SELECT e.address FROM sis.notification_group_members m
                     JOIN sis.notification_groups g ON g.id = m.group_id
                     JOIN sis.emails e ON e.person_id = m.person_id AND e.is_primary
                    WHERE g.code = 'BURSAR'"""
            )
            return {r["address"] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(go())


def test_balance_due_runs_in_the_worker_and_mails_the_group(
    stack, cli, mail_sink, database_url
) -> None:
    types = {t["name"]: t for t in cli.json("job-types")}
    # The running worker advertises every notifier its registry holds (the count grows with
    # the catalog; a hand-kept number went stale twice).
    from belltower_notifier.jobs import registry

    registered = {t.name for t in registry.for_pool("notifier") if t.name.startswith("notifier.")}
    assert len(registered) >= 38
    assert {name for name in types if name.startswith("notifier.")} == registered
    assert types["notifier.balance_due"]["title"] == "Notifier: Balance Due"
    assert types["notifier.balance_due"]["family"] == "Notifiers"
    assert types["notifier.balance_due"]["seeds"] == [
        {"catalog": "SONIS", "title": "Notifier: Balance Due"}
    ]
    listing = cli.run("job-types").stdout
    assert "Notifier: Auto Waitlist Enroll" in listing and "minimum_balance" in listing
    assert "== Notifiers ==" in listing and "seed task: SONIS “Notifier: Balance Due”" in listing

    job = cli.json(
        "jobs", "create", "--type", "notifier.balance_due", "--title", "Balances over 2000",
        "--daily-at", "07:00", "--param", "group=BURSAR", "--param", "minimum_balance=2000",
        "--param", "divisions=UG,GR",
    )  # fmt: skip
    result = cli.run("jobs", "run-now", job["id"], "--wait", "--json", check=False)
    run = json.loads(result.stdout)
    assert result.returncode == 0, run
    assert run["status"] == "succeeded"
    assert " rows processed, 3 recipients notified (3 e-mails" in run["summary"]

    wanted = bursar_emails(database_url)
    assert len(wanted) == 3
    received = [m for m in mail_sink.messages if set(m.envelope_to) & wanted]
    assert sorted(a for m in received for a in m.envelope_to) == sorted(wanted)
    assert all(m["Subject"].endswith("students with a balance due") for m in received)
