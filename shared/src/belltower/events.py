"""Messages that travel on JetStream, one msgspec Struct per event type, versioned by name.

Due work (``belltower.due.>``) is internal to Belltower. Run events (``belltower.run.>``) are
also read by integrators, so they are CloudEvents 1.0 in structured JSON: ``type`` is the
versioned event name, ``subject`` the job id, ``id`` unique per event and equal to its
``Nats-Msg-Id``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import msgspec

RunStatus = Literal[
    "succeeded", "failed", "timed_out", "dead_lettered", "lost", "abandoned", "held"
]
"""``lost`` and ``abandoned`` are the scheduler's reconciler's (``reconcile.py``): an occurrence
no worker ever started although it was published again, and a run whose worker stopped with no
delivery of it left. ``held``: a roster sync that stopped before sending because it would have
deleted or changed more than its safety thresholds allow; a person releases it
(``belltower runs release``) or the next run decides again."""
RUN_STATUSES: tuple[str, ...] = (
    "succeeded",
    "failed",
    "timed_out",
    "dead_lettered",
    "lost",
    "abandoned",
    "held",
)
Trigger = Literal["schedule", "manual", "chained", "backfill"]
"""``backfill``: an occurrence of the schedule's past run on request (``belltower jobs backfill``)."""

_OCCURRENCE_NS = uuid.UUID("6f1c3a52-5a0e-4d0e-9a57-2b1f8f0f4c11")
_RUN_NS = uuid.UUID("b3f0d9a4-0c7e-4f35-9a55-0e3c1e7a2d90")

MAX_OUTPUT_CHARS = 200_000


CLOUDEVENTS_JSON = "application/cloudevents+json"


def event_headers(event_id: str) -> dict[str, str]:
    """NATS headers of a run event: its id for JetStream de-duplication, its content type."""
    return {"Nats-Msg-Id": event_id, "Content-Type": CLOUDEVENTS_JSON}


def utcnow() -> datetime:
    return datetime.now(UTC)


# SHA-1 states that have already absorbed each namespace: a uuid5 is SHA-1(namespace + name),
# so copying one of these and feeding it only the name skips re-hashing the namespace and
# building a UUID object, about 5x faster than ``str(uuid.uuid5(...))`` with the same result.
# The dispatcher computes one of each per occurrence, 100k at a time on a busy morning.
_OCCURRENCE_SHA1 = hashlib.sha1(_OCCURRENCE_NS.bytes)
_RUN_SHA1 = hashlib.sha1(_RUN_NS.bytes)
# RFC 4122 variant bits (10xx) over the top two bits of a hex digit.
_VARIANT_DIGIT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def _uuid5(namespace_sha1: Any, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` from the namespace's pre-fed SHA-1 state.

    The version nibble (hex digit 12) becomes 5 and the variant bits go into digit 16, exactly
    as ``uuid.UUID(bytes=digest[:16], version=5)`` does; tests/unit/test_ids.py checks the
    output against ``uuid.uuid5`` over many random names.
    """
    h = namespace_sha1.copy()
    h.update(name.encode())
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT_DIGIT[x[16]]}{x[17:20]}-{x[20:32]}"


@lru_cache(maxsize=4_096)
def _utc_text(at: datetime) -> str:
    """An instant as the ids spell it. Cached: many jobs share an instant (everything at 07:00),
    and equal instants in other zones are equal keys with the same UTC text."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def occurrence_id(job_id: str, scheduled_for: datetime) -> str:
    """The id of the occurrence (job, scheduled instant): the same on every replica and restart."""
    return _uuid5(_OCCURRENCE_SHA1, f"{job_id}|{_utc_text(scheduled_for)}")


def manual_occurrence_id() -> str:
    """Run-now and other one-off occurrences get an id of their own."""
    return str(uuid.uuid4())


def chained_occurrence_id(job_id: str, upstream_occurrence_id: str) -> str:
    """The occurrence of job ``job_id`` chained after an upstream occurrence: a redelivered
    upstream event names the same one, so it cannot chain twice."""
    return _uuid5(_OCCURRENCE_SHA1, f"{job_id}|after|{upstream_occurrence_id}")


def skipped_occurrence_id(job_id: str, nominal: datetime) -> str:
    """The ledger row of an occurrence the schedule's own filters skipped (window, weekdays,
    school calendar, DST gap): an id apart from :func:`occurrence_id`, so such a row can never
    stand in for a run at the same instant after the job is edited."""
    return _uuid5(_OCCURRENCE_SHA1, f"{job_id}|skipped|{_utc_text(nominal)}")


def run_id_for(occurrence: str) -> str:
    """The run of an occurrence; deterministic so every delivery of it names the same run."""
    return _uuid5(_RUN_SHA1, occurrence)


EmailOn = Literal["default", "always", "failure"]
"""When a job's result mail goes out: ``default`` follows BELLTOWER_RESULT_MAIL_ONLY_FAILURES."""


class ResultMail(msgspec.Struct, kw_only=True, frozen=True):
    """Who gets a run's result by e-mail, carried from the job to its finished event."""

    to: tuple[str, ...] = ()
    on: EmailOn = "default"


class DueOccurrence(
    msgspec.Struct, kw_only=True, tag="belltower.occurrence.due.v1", tag_field="kind"
):
    """An occurrence the scheduler found due; its ``Nats-Msg-Id`` is ``occurrence_id``."""

    occurrence_id: str
    run_id: str
    job_id: str
    job_type: str
    job_title: str
    pool: str
    params: dict[str, Any] = {}
    priority: int = 500
    trigger: Trigger = "schedule"
    requested_by: str | None = None
    scheduled_for: datetime
    dispatched_at: datetime
    timeout_s: float | None = None
    result_mail: ResultMail | None = None
    requested_from: str | None = None
    retries: int = 0
    """Runs that end failed or timed out are tried again this many times, after a backoff."""
    backoff_s: tuple[float, float, float] = (10.0, 2.0, 600.0)
    """Retry backoff: initial seconds, factor, most seconds."""
    max_deliveries: int = 3
    """Deliveries after which the run is recorded ``dead_lettered`` instead of being tried again."""


class RunStartedData(msgspec.Struct, kw_only=True):
    run_id: str
    occurrence_id: str
    job_id: str
    job_type: str
    job_title: str
    pool: str
    priority: int
    trigger: Trigger
    requested_by: str | None = None
    scheduled_for: datetime
    dispatched_at: datetime
    started_at: datetime
    attempt: int = 1
    worker: str = ""
    trace_id: str | None = None
    requested_from: str | None = None


class RunProgressData(msgspec.Struct, kw_only=True):
    run_id: str
    occurrence_id: str
    job_id: str
    at: datetime
    done: int | None = None
    total: int | None = None
    message: str = ""


class RunFinishedData(msgspec.Struct, kw_only=True):
    run_id: str
    occurrence_id: str
    job_id: str
    job_type: str
    job_title: str
    pool: str
    status: RunStatus
    priority: int
    trigger: Trigger
    requested_by: str | None = None
    scheduled_for: datetime
    dispatched_at: datetime
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    attempt: int = 1
    worker: str = ""
    summary: str = ""
    output_text: str = ""
    output_html: str | None = None
    error: str | None = None
    trace_id: str | None = None
    result_mail: ResultMail | None = None
    requested_from: str | None = None


class _CloudEvent(msgspec.Struct, kw_only=True, tag_field="type"):
    specversion: str = "1.0"
    id: str
    source: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"


class RunStarted(_CloudEvent, tag="io.belltower.run.started.v1"):
    data: RunStartedData


class RunProgress(_CloudEvent, tag="io.belltower.run.progress.v1"):
    data: RunProgressData


class RunFinished(_CloudEvent, tag="io.belltower.run.finished.v1"):
    data: RunFinishedData


class JobStreakData(msgspec.Struct, kw_only=True):
    """A job's failure streak reached its alert threshold (``failing``) or ended with a success
    (``recovered``). ``occurrence_id`` is the run's that decided it: the event's id derives from it,
    so a redelivered run event cannot raise a second one. ``result_mail`` is the job's: history
    mails the notice to those addresses."""

    job_id: str
    job_type: str
    job_title: str
    pool: str
    occurrence_id: str
    run_id: str
    status: str
    """The status of the run that decided it (a failure, or ``succeeded`` on recovery)."""
    streak: int
    """Consecutive failures: up to now (failing) or the streak that ended (recovered)."""
    alert_after: int
    first_failed_at: datetime
    at: datetime
    error: str | None = None
    paused: bool = False
    """The job was paused by this failure (its ``pause_after_failures`` was reached)."""
    result_mail: ResultMail | None = None


class RunOverdueData(msgspec.Struct, kw_only=True):
    """A run has been going longer than ``factor`` times its job's expected duration (p95 of
    its latest ``sample`` succeeded runs), before any hard timeout."""

    run_id: str
    occurrence_id: str
    job_id: str
    job_type: str
    job_title: str
    pool: str
    started_at: datetime
    running_s: float
    expected_s: float
    factor: float
    sample: int
    timeout_s: float | None = None


class JobFailing(_CloudEvent, tag="io.belltower.job.failing.v1"):
    data: JobStreakData


class JobRecovered(_CloudEvent, tag="io.belltower.job.recovered.v1"):
    data: JobStreakData


class RunOverdue(_CloudEvent, tag="io.belltower.run.overdue.v1"):
    data: RunOverdueData


AlertEvent = JobFailing | JobRecovered | RunOverdue
"""Alerts the scheduler raises about jobs and runs; they travel on the run events stream
(``belltower.run.alert.>``) so that history and integrators receive them where they already listen."""

RunEvent = RunStarted | RunProgress | RunFinished | JobFailing | JobRecovered | RunOverdue

due_encoder = msgspec.json.Encoder()
due_decoder = msgspec.json.Decoder(DueOccurrence)
run_event_decoder = msgspec.json.Decoder(RunEvent)
