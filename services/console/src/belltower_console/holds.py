"""Releasing a held run (the roster syncs' safety hold): editor or admin, audited.

History records the release once per held run; the first release starts one new run of the
job, which applies the held change if it computes the same change again. A second release is
refused with the first one named, and starts nothing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from belltower import operations as ops
from belltower.api import RunNowRequest
from belltower.errors import Conflict, InvalidInput
from belltower.holds import Release, ReleaseRequest, ReleaseStarted

if TYPE_CHECKING:
    from .actions import Console
    from .store import Principal

ACTION = "runs.release"


async def release(console: Console, who: Principal, client: str | None, run_id: str) -> Release:
    """Release held run ``run_id``; Conflict when it is not held or was released already."""
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise InvalidInput(
            "run_id", f"{run_id!r} is not a run id", "a UUID as shown by `belltower runs list`"
        ) from None
    await console.require(who, "editor", client, ACTION, run_id)
    request = ReleaseRequest(run_id=run_id, released_by=who.username, released_from=client)
    try:
        done = await console.api.call(ops.RUNS_RELEASE, request)
    except Conflict as exc:
        await console.audit(
            who, client, ACTION, target=run_id, outcome="failed", detail=exc.message
        )
        raise
    if not done.first:
        message = (
            f"run {run_id} was released already by {done.released_by or 'someone'} at "
            f"{done.released_at:%Y-%m-%d %H:%M:%S} UTC"
            + (f" (run {done.release_run_id} applies it)" if done.release_run_id else "")
            + "; a held change is applied once"
        )
        await console.audit(who, client, ACTION, target=run_id, outcome="failed", detail=message)
        raise Conflict(message)
    after: dict[str, object] = {"job_id": done.job_id}
    try:
        started = await console.api.call(
            ops.JOBS_RUN_NOW,
            RunNowRequest(id=done.job_id, requested_by=who.username, requested_from=client),
        )
    except Conflict as exc:
        # A run of the job is going: the release stays recorded and that job's next run applies it.
        after["deferred"] = exc.message
    else:
        done = await console.api.call(
            ops.RUNS_RELEASE_STARTED, ReleaseStarted(run_id=run_id, release_run_id=started.run_id)
        )
        after["release_run_id"] = started.run_id
    await console.audit(who, client, ACTION, target=run_id, after=after)
    return done
