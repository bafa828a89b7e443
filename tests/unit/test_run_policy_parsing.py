"""Run-policy flags of `jobs create` and the policy's own arithmetic."""

import pytest
from typer.testing import CliRunner

from belltower.api import After, RetryBackoff, RunPolicy
from belltower.cli import app
from belltower.cli.parse import parse_after, parse_backoff
from belltower.errors import InvalidInput

JOB = "3f2a6c1e-0000-4000-8000-000000000001"


def test_after_takes_job_event_and_delay() -> None:
    assert parse_after(JOB) == After(job=JOB, on="succeeded", delay_s=0.0)
    assert parse_after(f"{JOB}:failed+10m") == After(job=JOB, on="failed", delay_s=600.0)
    assert parse_after(f"{JOB}+1h30m") == After(job=JOB, on="succeeded", delay_s=5400.0)


@pytest.mark.parametrize("text", [f"{JOB}:later", ":succeeded+5m", f"{JOB}+soon"])
def test_bad_after_is_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_after(text)
    assert info.value.field in ("after", "every")


def test_backoff_grows_by_its_factor_up_to_its_maximum() -> None:
    backoff = parse_backoff("10s,2,1m")
    assert backoff == RetryBackoff(initial_s=10, factor=2, max_s=60)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    with pytest.raises(InvalidInput) as info:
        parse_backoff("10s,2")
    assert info.value.field == "retry_backoff"


def test_deliveries_default_to_the_retries_plus_three() -> None:
    assert RunPolicy().deliveries == 3
    assert RunPolicy(retries=4).deliveries == 7
    assert RunPolicy(retries=4, max_deliveries=5).deliveries == 5


def test_unknown_policies_are_refused_before_anything_is_sent() -> None:
    base = ["jobs", "create", "--type", "system.canary", "--title", "t", "--every", "1m"]
    for flag, value in (("--overlap", "queue"), ("--catch-up", "some")):
        result = CliRunner().invoke(app, [*base, flag, value])
        assert result.exit_code == 2, result.output
        assert flag.strip("-").replace("-", "_") in result.output


def test_why_groups_a_run_of_occurrences_with_the_same_fate() -> None:
    from datetime import UTC, datetime, timedelta

    from belltower.api import LedgerEntry
    from belltower.cli.why import _why_rows

    t0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
    paused = "skipped: the job was paused by alice at 2030-01-07T08:00:00+00:00"
    entries = [
        LedgerEntry(occurrence_id=f"o{i}", run_id=None, scheduled_for=t0 - timedelta(minutes=i),
                    trigger="schedule", state="skipped", cause="paused", reason=paused)
        for i in range(3)
    ] + [
        LedgerEntry(occurrence_id="r", run_id="run-1", scheduled_for=t0 - timedelta(minutes=3),
                    trigger="schedule", state="dispatched", run_status="failed", run_error="boom")
    ]  # fmt: skip
    rows = _why_rows(entries)
    assert rows[0] == [
        "2030-01-07T07:58:00+00:00 … 2030-01-07T08:00:00+00:00 (3)",
        "schedule",
        paused,
    ]
    assert rows[1][2].startswith("ran: failed (boom); run run-1")
    assert len(rows) == 2
