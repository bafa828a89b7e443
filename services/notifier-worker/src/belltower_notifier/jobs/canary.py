"""``system.canary``: a job with no side effects, for smoke tests, SRE canaries and benchmarks."""

from __future__ import annotations

import asyncio

import msgspec

from belltower.errors import JobFailed
from belltower.events import utcnow
from belltower.jobtypes import JobContext, JobType


class CanaryParams(msgspec.Struct, forbid_unknown_fields=True):
    message: str = "ok"
    sleep_s: float = msgspec.field(default=0.0)
    steps: int = 0
    fail: bool = False


async def run(ctx: JobContext, params: CanaryParams) -> None:
    if params.sleep_s < 0 or params.steps < 0:
        raise JobFailed("sleep_s and steps must not be negative")
    lag_ms = (utcnow() - ctx.scheduled_for).total_seconds() * 1000
    steps = max(params.steps, 1 if params.sleep_s else 0)
    for step in range(1, steps + 1):
        await asyncio.sleep(params.sleep_s / steps)
        await ctx.progress(step, steps, f"step {step} of {steps}")
    if params.fail:
        raise JobFailed(f"canary asked to fail: {params.message}")
    ctx.output.line(
        f"canary {params.message}: scheduled for {ctx.scheduled_for.isoformat()}, started {lag_ms:.0f} ms later"
    )
    ctx.output.summary = f"canary {params.message}"


job_type = JobType(
    name="system.canary",
    pool="notifier",
    title="Canary",
    description=(
        "Does nothing but report that it ran and how late: proves the whole path from schedule to "
        "history works. Optional sleep, progress steps and failure for testing."
    ),
    params=CanaryParams,
    run=run,
)
