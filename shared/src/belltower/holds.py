"""The safety hold's messages: releasing a held roster sync, and the releases a worker looks up.

A roster sync whose change would delete or change more than its thresholds allow ends ``held``
and sends nothing. A person releases it (console, ``belltower runs release``, the HTTP API);
history records the release once per held run, and the console starts one new run of the job.
That run (or whichever run of the job comes first) asks history for the job's releases and
applies the held change once, if what it computes is still the change that was held.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class ReleaseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Release a held run: who asked and from where are the console's, never the caller's."""

    run_id: str
    released_by: str | None = None
    released_from: str | None = None


class Release(msgspec.Struct, kw_only=True):
    """A held run's release. ``first`` is false when the run had been released already (the
    answer then is that earlier release, unchanged). ``release_run_id``: the run the console
    started to apply it, once known."""

    run_id: str
    job_id: str
    released_by: str | None
    released_from: str | None
    released_at: datetime
    first: bool = True
    release_run_id: str | None = None


class ReleaseStarted(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The console tells history which run it started for a release."""

    run_id: str
    release_run_id: str


class ReleasesQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The releases of a job's held runs, newest first (the worker asks before it applies a hold)."""

    job_id: str
    limit: int = 20
