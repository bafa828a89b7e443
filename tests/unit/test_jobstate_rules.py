"""Job state rules without servers: failure streaks, the pause note, overdue thresholds, the CLI's
max-runs and threshold options, the alert mails and the export of the new fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from belltower import transfer
from belltower.api import Job, RunPolicy
from belltower.cli.jobstate import state_fields, state_rows
from belltower.errors import InvalidInput
from belltower.events import JobFailing, JobRecovered, JobStreakData, ResultMail
from belltower.jobstate import check_pause_note
from belltower.schedule import Every, Schedule
from belltower_history.alertmail import compose_alert
from belltower_scheduler.jobchecks import check_state_policy
from belltower_scheduler.overdue import OverdueRule
from belltower_scheduler.streaks import Streak, advance

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)


def run(streak: Streak | None, status: str, n: int, alert: int | None = 2, pause: int | None = 4):
    return advance(
        streak,
        status=status,
        occurrence_id=f"occ-{n}",
        finished_at=T0 + timedelta(minutes=n),
        alert_after=alert,
        pause_after=pause,
    )


def test_a_streak_alerts_once_pauses_at_its_threshold_and_recovers_on_the_next_success() -> None:
    streak, failing, paused = None, [], []
    for n, status in enumerate(["failed", "timed_out", "failed", "lost", "abandoned"], 1):
        outcome = run(streak, status, n)
        streak = outcome.streak
        failing.append(outcome.failing)
        paused.append(outcome.pause)
        assert outcome.recovered is None
    assert failing == [False, True, False, False, False]  # once, at the second failure
    assert paused == [False, False, False, True, True]  # at 4, and again if resumed mid-streak
    assert streak == Streak(5, T0 + timedelta(minutes=1), "occ-5", alerted=True)
    done = run(streak, "succeeded", 6)
    assert done.streak is None and done.recovered == streak and not done.failing


def test_a_success_after_a_streak_that_never_alerted_sends_no_recovery() -> None:
    outcome = run(None, "failed", 1, alert=3)
    assert outcome.streak == Streak(1, T0 + timedelta(minutes=1), "occ-1")
    assert not outcome.failing
    assert run(outcome.streak, "succeeded", 2, alert=3).recovered is None
    assert run(None, "succeeded", 3) == run(None, "succeeded", 3)  # nothing, and no streak
    assert run(None, "succeeded", 3).streak is None


def test_without_thresholds_a_streak_is_counted_but_raises_nothing() -> None:
    streak = None
    for n in range(1, 6):
        outcome = run(streak, "dead_lettered", n, alert=None, pause=None)
        assert not outcome.failing and not outcome.pause
        streak = outcome.streak
    assert streak is not None and streak.streak == 5 and not streak.alerted


def test_a_threshold_lowered_mid_streak_alerts_at_the_next_failure() -> None:
    streak = run(run(None, "failed", 1, alert=5).streak, "failed", 2, alert=5).streak
    assert run(streak, "failed", 3, alert=2).failing


@pytest.mark.parametrize(
    ("note", "expected"),
    [(None, None), ("   ", None), ("  SIS upgrade until Monday ", "SIS upgrade until Monday")],
)
def test_a_pause_note_is_one_trimmed_line(note, expected) -> None:
    assert check_pause_note(note) == expected


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("x" * 501, "501 characters"),
        ("line one\nline two", "control"),
        ("bell\x07", "control"),
        ("evil\u202egnp.exe", "bidi override"),
        ("sep\u2028arated", "control"),
    ],
)
def test_a_pause_note_too_long_or_with_control_characters_is_refused(note, message) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_pause_note(note)
    assert refused.value.field == "note"
    assert message in str(refused.value)
    assert "500 characters" in (refused.value.accepted or "")


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (RunPolicy(max_runs=0), "max_runs"),
        (RunPolicy(max_runs=10_001), "max_runs"),
        (RunPolicy(alert_after_failures=0), "alert_after_failures"),
        (RunPolicy(pause_after_failures=1001), "pause_after_failures"),
    ],
)
def test_out_of_range_limits_are_refused_naming_the_field(policy, field) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_state_policy(policy)
    assert refused.value.field == field


def test_limits_in_range_are_accepted() -> None:
    check_state_policy(RunPolicy(max_runs=3, alert_after_failures=1, pause_after_failures=1000))


def test_the_overdue_threshold_needs_enough_runs_and_comes_before_the_timeout() -> None:
    rule = OverdueRule(factor=3.0, min_runs=5, sample=20)
    assert rule.threshold(10.0, 4) is None
    assert rule.threshold(None, 0) is None
    assert rule.threshold(10.0, 5) == 30.0
    assert rule.applies(30.0, None) and rule.applies(30.0, 31.0)
    assert not rule.applies(30.0, 30.0)  # the hard timeout ends the run first


def test_cli_options_set_the_fields_and_zero_clears_them() -> None:
    assert state_fields(None, None, None) == {}
    assert state_fields(3, 0, 5) == {
        "max_runs": 3,
        "alert_after_failures": None,
        "pause_after_failures": 5,
    }
    with pytest.raises(InvalidInput) as refused:
        state_fields(-1, None, None)
    assert refused.value.field == "max_runs"


def job(**extra: object) -> Job:
    fields: dict = dict(
        id="00000000-0000-0000-0000-000000000001", title="Attendance", type="system.canary",
        pool="notifier", params={}, schedule=Schedule(rule=Every(seconds=60)),
        schedule_text="every minute", priority=500, paused=False, next_run_at=T0,
        keep_history_days=30, timeout_s=None, type_installed=True, created_at=T0, updated_at=T0,
    )  # fmt: skip
    fields.update(extra)
    return Job(**fields)


def test_job_documents_carry_max_runs_and_failure_thresholds_through_export() -> None:
    doc = transfer.document_of(job(max_runs=3, alert_after_failures=2, pause_after_failures=5))
    assert (doc["max_runs"], doc["alert_after_failures"], doc["pause_after_failures"]) == (3, 2, 5)
    # state read from the ledger is not part of a definition
    for derived in ("runs_left", "failure_streak", "expected_duration_s", "pause_note"):
        assert derived not in doc


def test_jobs_show_lines_say_runs_left_the_streak_and_the_expected_duration() -> None:
    shown = dict(
        state_rows(
            job(
                paused=True, pause_note="max runs reached: 3 of 3", max_runs=3, runs_left=0,
                runs_counted=3, alert_after_failures=2, failure_streak=4,
                expected_duration_s=1.5, expected_duration_runs=20, overdue_after_s=4.5,
            )
        )
    )  # fmt: skip
    assert shown["pause note"] == "max runs reached: 3 of 3"
    assert shown["max runs"] == "3 (0 left, 3 dispatched)"
    assert shown["on failures"] == "alert after 2 in a row"
    assert shown["failing"] == "4 in a row"
    assert shown["expected"] == "1.5s (p95 of the last 20 runs); overdue after 4.5s"


def streak_data(**extra: object) -> JobStreakData:
    fields: dict = dict(
        job_id="j-1", job_type="system.canary", job_title="Attendance\r\nBcc: x@evil.test",
        pool="notifier", occurrence_id="o-1", run_id="r-1", status="failed", streak=3,
        alert_after=3, first_failed_at=T0, at=T0 + timedelta(minutes=3), error="SFTP refused <b>",
        result_mail=ResultMail(to=("it@school.edu",)),
    )  # fmt: skip
    fields.update(extra)
    return JobStreakData(**fields)


def test_alert_mails_name_the_streak_escape_html_and_keep_headers_to_one_line() -> None:
    failing = JobFailing(id="o-1.failing", source="t", subject="j-1", time=T0, data=streak_data())
    mail = compose_alert(failing, "https://sis.example.edu/belltower/")
    assert mail is not None and mail.kind == "failing" and mail.recipients == ["it@school.edu"]
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.subject.startswith("[Belltower] Failing: Attendance")
    assert "3 in a row (alert after 3)" in mail.body_text
    assert "SFTP refused &lt;b&gt;" in mail.body_html
    assert "https://sis.example.edu/belltower/jobs/j-1" in mail.body_text
    recovered = JobRecovered(
        id="o-2.recovered", source="t", subject="j-1", time=T0, data=streak_data(status="succeeded")
    )
    back = compose_alert(recovered, "https://sis.example.edu")
    assert back is not None and back.kind == "recovered"
    assert "succeeded again" in back.subject
    nobody = JobFailing(
        id="x", source="t", subject="j-1", time=T0, data=streak_data(result_mail=None)
    )
    assert compose_alert(nobody, "https://x") is None


def test_a_streak_gauge_is_one_series_per_failing_job_and_goes_with_the_partition() -> None:
    from prometheus_client import REGISTRY

    from belltower import metrics

    labels = {"job_id": "j-gauge", "job_type": "system.canary"}
    metrics.set_failure_streak("j-gauge", "system.canary", 2)
    metrics.set_failure_streak("j-gauge", "system.canary", 3)
    assert REGISTRY.get_sample_value("belltower_job_failure_streak", labels) == 3.0
    metrics.forget_failure_streaks({"j-gauge"})  # the partition went to another replica
    assert REGISTRY.get_sample_value("belltower_job_failure_streak", labels) is None
    metrics.set_failure_streak("j-gauge", "system.canary", 0)  # ending a streak it has not: fine
