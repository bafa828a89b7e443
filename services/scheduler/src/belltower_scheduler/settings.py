"""Scheduler settings on top of the shared ones."""

from __future__ import annotations

from pydantic import Field

from belltower.settings import Settings


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
