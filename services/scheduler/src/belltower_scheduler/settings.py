"""Scheduler settings on top of the shared ones."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from belltower.settings import Settings

if TYPE_CHECKING:
    from .overdue import OverdueRule


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SchedulerSettings(Settings):
    misfire_grace_s: float = Field(
        default=60.0,
        gt=0,
        description="An occurrence later than this when found (the scheduler was down) is missed: "
        "the job's catch-up policy decides whether it runs, and the ledger records it either way",
    )
    dispatch_batch: int = Field(
        default=20_000, ge=1, description="Most occurrences planned in one transaction"
    )
    stale_run_s: float = Field(
        default=86_400.0,
        gt=0,
        description="A run dispatched this long ago and not finished no longer holds back the next "
        "occurrence of its job under the overlap policy (its finished event may never come)",
    )
    scheduler_lease_s: float = Field(
        default=6.0,
        ge=1.0,
        le=300.0,
        description="How long a partition's lease lasts without renewal: a standby takes over a "
        "dead replica's partitions about this long after its last renewal",
    )
    scheduler_renew_s: float | None = Field(
        default=None,
        gt=0,
        description="How often the holder renews its leases (default: a third of the lease)",
    )
    scheduler_partitions: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Schedules are split by job id into this many partitions, each leased on its "
        "own; the same on every replica",
    )
    scheduler_replica_id: str = Field(
        default_factory=_default_replica_id,
        min_length=1,
        max_length=200,
        description="This replica's name in leases and logs (default: host name and pid)",
    )
    scheduler_clock_offset_file: Path | None = Field(
        default=None,
        description="Test-only, never in a deployment: a file holding seconds added to the "
        "scheduler's notion of now, read again when it changes (the fault matrix steps the "
        "clock of a running scheduler with it; see clock.py)",
    )

    scheduler_decision_ttl_s: float = Field(
        default=86_400.0,
        gt=0,
        le=90 * 86_400,
        description="How long the missed occurrences of a job with catch-up policy ask wait for "
        "a decision (`belltower jobs decide`); unanswered, they are skipped and the ledger says "
        "the decision expired. Checked by the partition's holder every "
        "BELLTOWER_RECONCILE_INTERVAL_S",
    )

    reconcile_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often the partition's holder compares its ledger with the run events: "
        "occurrences dispatched and never started are published again, then marked lost; runs "
        "whose worker stopped with no delivery left are marked abandoned (reconcile.py)",
    )
    reconcile_start_deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="How long after its dispatch an occurrence may go without a started event "
        "before the reconciler publishes it again (default: BELLTOWER_ACK_WAIT_S times the "
        "job's most deliveries, the time JetStream takes to deliver it that often)",
    )
    reconcile_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Times the reconciler publishes an occurrence again after its copy vanished "
        "unstarted, before it records it lost",
    )
    reconcile_abandon_s: float | None = Field(
        default=None,
        gt=0,
        description="How long a run's worker may go without heart-beating before the reconciler "
        "looks whether a delivery is left to take it over, and else ends it abandoned "
        "(default: twice BELLTOWER_ACK_WAIT_S)",
    )

    overdue_factor: float = Field(
        default=3.0,
        ge=1.0,
        le=1000.0,
        description="A run going longer than this many times its job's expected duration (p95 of "
        "its latest BELLTOWER_OVERDUE_SAMPLE succeeded runs) raises belltower.run.overdue, "
        "looked at every BELLTOWER_RECONCILE_INTERVAL_S",
    )
    overdue_min_runs: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Succeeded runs a job needs before its expected duration is used",
    )
    overdue_sample: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Latest succeeded runs the expected duration (their p95) is taken over",
    )

    @property
    def overdue_rule(self) -> OverdueRule:
        from .overdue import OverdueRule

        return OverdueRule(self.overdue_factor, self.overdue_min_runs, self.overdue_sample)

    @model_validator(mode="after")
    def _renewal_inside_lease(self) -> SchedulerSettings:
        if (
            self.scheduler_renew_s is not None
            and self.scheduler_renew_s >= self.scheduler_lease_s / 2
        ):
            raise ValueError(
                f"BELLTOWER_SCHEDULER_RENEW_S ({self.scheduler_renew_s:g}) must be less than half of "
                f"BELLTOWER_SCHEDULER_LEASE_S ({self.scheduler_lease_s:g}), so one late renewal does "
                "not lose the lease"
            )
        return self

    @property
    def renew_s(self) -> float:
        return self.scheduler_renew_s or self.scheduler_lease_s / 3

    def start_deadline_s(self, deliveries: int) -> float:
        """How long an occurrence of a job with ``deliveries`` most deliveries may stay unstarted."""
        if self.reconcile_start_deadline_s is not None:
            return self.reconcile_start_deadline_s
        return self.ack_wait_s * max(1, deliveries)

    @property
    def abandon_s(self) -> float:
        return self.reconcile_abandon_s or 2 * self.ack_wait_s
