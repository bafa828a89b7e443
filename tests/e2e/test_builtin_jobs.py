"""The built-in jobs of the integration pool, run by a school admin with the CLI.

Batch Folder Cleanup deletes old files from the batch folder and mails what it deleted; Daily
Maintenance deletes execution history past each job's "keep history" setting.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.slow

DAY = 86400
RECIPIENTS = ["registrar@school.example", "it@school.example"]


def age(path: Path, days: float) -> None:
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def write(path: Path, size: int, days_old: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    age(path, days_old)
    return path


def run_now(cli, job_id: str) -> tuple[int, dict[str, Any]]:
    """``jobs run-now ID --wait --json``: the exit code and the finished run."""
    result = cli.run("jobs", "run-now", job_id, "--wait", "--json", check=False)
    assert result.returncode in (0, 1), (result.stdout, result.stderr)
    return result.returncode, json.loads(result.stdout)


def cleanup_job(cli, title: str, *params: str) -> str:
    flags = [arg for p in params for arg in ("--param", p)]
    job = cli.json("jobs", "create", "--type", "files.batch_folder_cleanup", "--title", title,
                   "--daily-at", "02:00", *flags)  # fmt: skip
    return job["id"]


def sql(database_url: str, query: str, *args: Any) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.execute(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_batch_folder_cleanup_deletes_old_files_and_mails_the_list(
    stack, cli, tmp_batch_folder: Path, tmp_path: Path, mail_sink
) -> None:
    folder = tmp_batch_folder
    old = {
        "attendance-2024-09.csv": write(folder / "attendance-2024-09.csv", 1200, 40),
        "grades export.txt": write(folder / "grades export.txt", 300, 31),
    }
    new = [
        write(folder / "attendance-2024-10.csv", 500, 29),
        write(folder / "today.csv", 10, 0),
        write(folder / "archive" / "2019.csv", 50, 400),
    ]
    age(folder / "archive", 400)
    target = write(tmp_path / "elsewhere" / "roster.csv", 70, 90)
    link = folder / "latest-roster.csv"
    link.symlink_to(target)
    age(link, 90)
    everything = sorted(p.relative_to(folder) for p in folder.rglob("*"))

    # A dry run first: it reports what it would delete, deletes nothing and mails no one.
    dry = cleanup_job(cli, "Cleanup (trial)", "days=30", "dry_run=true",
                      f"notify={','.join(RECIPIENTS)}")  # fmt: skip
    code, run = run_now(cli, dry)
    assert code == 0 and run["status"] == "succeeded", run
    assert run["summary"] == "would delete 2 files (1.5 KB)"
    assert run["output_text"].startswith(f"would delete 2 files older than 30 days from {folder}")
    assert all(name in run["output_text"] for name in old)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == everything
    assert mail_sink.messages == []

    job = cleanup_job(cli, "Batch Folder Cleanup", "days=30",
                      f"notify={','.join(RECIPIENTS)}")  # fmt: skip
    code, run = run_now(cli, job)
    assert code == 0 and run["status"] == "succeeded", run

    assert not any(p.exists() for p in old.values())
    assert all(p.exists() for p in new)
    assert link.is_symlink() and target.read_bytes() == b"x" * 70
    remaining = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert remaining == [p for p in everything if p.name not in old]

    assert run["summary"] == "deleted 2 files (1.5 KB)"
    lines = run["output_text"].splitlines()
    assert lines[0] == f"deleted 2 files older than 30 days from {folder} (1.5 KB)"
    listed = [line.split("  ")[1] for line in lines[1:3]]
    assert listed == sorted(old), lines
    assert "1.2 KB" in lines[1] and "300 B" in lines[2]
    assert lines[3] == f"alert sent to {', '.join(RECIPIENTS)}"
    kept_names = ("attendance-2024-10.csv", "today.csv", "2019.csv", "latest-roster.csv")
    assert not any(name in run["output_text"] for name in kept_names)

    shown_html = cli.run("runs", "show", run["run_id"], "--html").stdout
    assert "<strong>2</strong>" in shown_html
    assert all(f"<code>{name}</code>" in shown_html for name in old)
    shown = cli.run("runs", "show", run["run_id"]).stdout
    assert "status:        succeeded" in shown and "grades export.txt" in shown

    mail = mail_sink.wait_for_sync(timeout=5)
    assert len(mail_sink.messages) == 1
    assert sorted(mail.envelope_to) == sorted(RECIPIENTS)
    assert mail["To"] == ", ".join(RECIPIENTS)
    assert mail["Subject"] == "Batch folder cleanup: 2 old files deleted"
    body = mail.get_content()
    assert all(f"  {name}\n" in body for name in old)
    assert "deleted 2 files (1.5 KB)" in body and str(folder) in body
    assert not any(name in body for name in kept_names)

    # Run again: nothing is old any more, so nothing is deleted and no one is mailed.
    code, run = run_now(cli, job)
    assert code == 0 and run["summary"] == "deleted 0 files (0 B)"
    assert len(mail_sink.messages) == 1


def test_batch_folder_cleanup_misconfigured_fails_naming_the_problem(
    stack, cli, tmp_batch_folder: Path, mail_sink
) -> None:
    old_file = write(tmp_batch_folder / "old.csv", 10, 100)

    missing = cleanup_job(cli, "Cleanup of a missing folder", "folder=nonexistent/x",
                          "notify=it@school.example")  # fmt: skip
    code, run = run_now(cli, missing)
    assert code == 1 and run["status"] == "failed", run
    assert "nonexistent/x" in run["error"] and "BELLTOWER_BATCH_FOLDER" in run["error"]
    assert "nonexistent/x does not exist" in run["output_text"]
    failed = cli.run("jobs", "run-now", missing, "--wait", check=False)
    assert failed.returncode == 1 and "status:        failed" in failed.stdout
    assert re.search(r"error:\s+batch folder \S*nonexistent/x does not exist", failed.stdout)

    outside = cli.run("jobs", "create", "--type", "files.batch_folder_cleanup", "--title", "Etc",
                      "--every", "1d", "--param", "folder=/etc", check=False)  # fmt: skip
    assert outside.returncode == 2, outside.stdout
    assert "param.folder" in outside.stderr and "leaves the batch folder" in outside.stderr

    negative = cli.run("jobs", "create", "--type", "files.batch_folder_cleanup", "--title", "Negative days",
                       "--every", "1d", "--param", "days=-1", check=False)  # fmt: skip
    assert (
        negative.returncode == 2
        and "param.days" in negative.stderr
        and "at least 0" in negative.stderr
    )

    assert old_file.exists()
    assert mail_sink.messages == []
    failed_runs = cli.json("runs", "list", "--status", "failed")
    assert sorted(r["job_id"] for r in failed_runs) == [missing, missing]


def test_daily_maintenance_deletes_history_past_each_jobs_retention(
    stack, cli, database_url: str
) -> None:
    def canary(title: str, keep: str) -> str:
        job = cli.json("jobs", "create", "--type", "system.canary", "--title", title,
                       "--every", "1h", "--keep-history", keep)  # fmt: skip
        return job["id"]

    def manual_runs() -> dict[str, set[str]]:
        """Run ids by job, from one ``runs list`` as the admin reads it (schedule runs left out)."""
        by_job: dict[str, set[str]] = {job: set() for job in (week, forever, retired)}
        for r in cli.json("runs", "list", "--limit", "1000"):
            if r["trigger"] == "manual" and r["job_id"] in by_job:
                by_job[r["job_id"]].add(r["run_id"])
        return by_job

    week = canary("Attendance sync", "7")
    forever = canary("Transcript audit", "forever")
    retired = canary("Retired export", "30")
    runs: dict[str, list[str]] = {week: [], forever: [], retired: []}
    for job in [week, forever] * 3 + [retired]:
        code, run = run_now(cli, job)
        assert code == 0 and run["status"] == "succeeded", run
        runs[job].append(run["run_id"])
    week_runs, forever_runs, retired_runs = runs[week], runs[forever], runs[retired]
    cli.run("jobs", "delete", retired)

    def age_runs(run_ids: list[str], days: int) -> None:
        status = sql(
            database_url,
            "UPDATE history.runs SET finished_at = finished_at - make_interval(days => $2),"
            " started_at = started_at - make_interval(days => $2),"
            " dispatched_at = dispatched_at - make_interval(days => $2),"
            " scheduled_for = scheduled_for - make_interval(days => $2)"
            " WHERE run_id = ANY($1::uuid[])",
            run_ids,
            days,
        )
        assert status == f"UPDATE {len(run_ids)}"

    age_runs(week_runs[:2], 10)
    age_runs(forever_runs[:2], 400)  # past any default: only "forever" keeps them
    age_runs(retired_runs, 100)
    ledger = sql(
        database_url,
        "UPDATE scheduler.occurrences SET created_at = now() - interval '100 days'"
        " WHERE job_id = $1::uuid AND trigger = 'manual'",
        retired,
    )
    assert ledger == "UPDATE 1"
    before = manual_runs()
    assert before == {week: set(week_runs), forever: set(forever_runs), retired: set(retired_runs)}

    def expected_lines(verb: str) -> list[str]:
        return [
            f"{verb} 3 runs past retention, 1 ledger entry older than 90 days",
            f"        2  Attendance sync  [{week}]  kept 7 days",
            f"        1  (deleted job)  [{retired}]  kept 90 days",
        ]

    trial = cli.json("jobs", "create", "--type", "system.daily_maintenance", "--title",
                     "Daily Maintenance (trial)", "--daily-at", "03:00", "--param", "dry_run=true")  # fmt: skip
    code, run = run_now(cli, trial["id"])
    assert code == 0 and run["status"] == "succeeded", run
    assert run["output_text"].splitlines() == expected_lines("would delete")
    assert run["summary"] == "would delete 3 runs of 2 jobs and 1 ledger entry"
    assert manual_runs() == before

    job = cli.json("jobs", "create", "--type", "system.daily_maintenance", "--title",
                   "Daily Maintenance", "--daily-at", "03:00")  # fmt: skip
    code, run = run_now(cli, job["id"])
    assert code == 0 and run["status"] == "succeeded", run
    assert run["output_text"].splitlines() == expected_lines("deleted")
    assert run["summary"] == "deleted 3 runs of 2 jobs and 1 ledger entry"
    html = cli.run("runs", "show", run["run_id"], "--html").stdout
    assert "<strong>3</strong>" in html and "<td>Attendance sync</td><td>2</td>" in html
    assert "Transcript audit" not in html

    assert manual_runs() == {week: {week_runs[2]}, forever: set(forever_runs), retired: set()}
    gone = cli.run("runs", "show", week_runs[0], check=False)
    assert gone.returncode == 1 and "no run with id" in gone.stderr

    code, run = run_now(cli, job["id"])
    assert code == 0 and run["summary"] == "deleted 0 runs of 0 jobs and 0 ledger entries"
    assert manual_runs()[forever] == set(forever_runs)
