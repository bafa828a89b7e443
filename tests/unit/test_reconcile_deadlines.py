"""The reconciler's deadlines as the settings derive them (documented in the operator guide)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from belltower.api import RunPolicy
from belltower_scheduler.settings import SchedulerSettings


def settings(**values: object) -> SchedulerSettings:
    return SchedulerSettings(nats_url="nats://127.0.0.1:4222", **values)  # type: ignore[arg-type]


def test_the_start_deadline_is_the_ack_wait_times_the_jobs_most_deliveries() -> None:
    s = settings(ack_wait_s=30)
    assert s.start_deadline_s(RunPolicy().deliveries) == 90  # 3 deliveries by default
    assert s.start_deadline_s(RunPolicy(retries=2).deliveries) == 150
    assert s.start_deadline_s(0) == 30  # never less than one ack wait


def test_a_start_deadline_set_applies_to_every_job() -> None:
    s = settings(ack_wait_s=30, reconcile_start_deadline_s=4)
    assert s.start_deadline_s(1) == s.start_deadline_s(10) == 4


def test_a_run_is_looked_at_after_twice_the_ack_wait_without_heartbeat_unless_set() -> None:
    assert settings(ack_wait_s=30).abandon_s == 60
    assert settings(ack_wait_s=30, reconcile_abandon_s=5).abandon_s == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [("reconcile_interval_s", 0), ("reconcile_attempts", 0), ("reconcile_start_deadline_s", -1)],
)
def test_settings_that_cannot_work_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        settings(**{field: value})
