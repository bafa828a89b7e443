"""The management API's operations, each declared once: service, name, request and reply type.

A server registers its handler against a declaration (:func:`belltower.rpc.serves`), a client
calls by it (:meth:`belltower.rpc.ApiClient.call`), so a type checker sees both ends of every
operation. The subject is ``belltower.api.<service>.<name>`` (:func:`belltower.subjects.api_subject`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .api import (
    Calendar,
    CalendarDayRefs,
    CalendarDays,
    CalendarDiff,
    CalendarDiffRequest,
    CalendarRef,
    CalendarSpec,
    CalendarSummary,
    CalendarUpdate,
    Deleted,
    ImportFinished,
    ImportFinishRequest,
    ImportRequest,
    ImportResult,
    ImportStageRequest,
    Job,
    JobRef,
    JobsPage,
    JobsPageRequest,
    JobSpec,
    JobTypeInfo,
    LastRunsRequest,
    LedgerPurged,
    LedgerPurgeRequest,
    NoRequest,
    PauseRequest,
    PurgeRequest,
    PurgeResult,
    RunNowRequest,
    RunNowResult,
    RunQuery,
    RunRecord,
    RunRef,
    RunsPage,
    RunsPageRequest,
    WhyRequest,
    WhyResult,
)
from .backfill import BackfillRequest, BackfillResult
from .decisions import DecisionRequest, DecisionResult, DecisionsRequest, PendingDecision
from .holds import Release, ReleaseRequest, ReleasesQuery, ReleaseStarted
from .roster import RosterPage, RosterQuery
from .subjects import ApiService, api_subject

Req = TypeVar("Req")
Rep = TypeVar("Rep")


@dataclass(frozen=True, eq=False)
class Operation(Generic[Req, Rep]):
    """One request-reply operation of a service: its request is decoded as ``request``, its
    result as ``reply``. Build them only here, with :func:`declare`."""

    service: ApiService
    name: str
    request: type[Req]
    reply: type[Rep]
    summary: str

    @property
    def subject(self) -> str:
        return api_subject(self.service, self.name)

    def __repr__(self) -> str:
        return f"<operation {self.service} {self.name}>"


_DECLARED: dict[tuple[str, str], Operation[Any, Any]] = {}


def declare(
    service: ApiService, name: str, request: type[Req], reply: type[Rep], summary: str
) -> Operation[Req, Rep]:
    op = Operation(service, name, request, reply, summary)
    if _DECLARED.setdefault((service, name), op) is not op:
        raise ValueError(f"{service} {name} is declared twice")
    return op


def declared(service: ApiService | None = None) -> list[Operation[Any, Any]]:
    """Every declared operation (of one service), in declaration order."""
    return [op for op in _DECLARED.values() if service is None or op.service == service]


def find(service: str, name: str) -> Operation[Any, Any] | None:
    return _DECLARED.get((service, name))


def is_declared(op: Operation[Any, Any]) -> bool:
    """Whether ``op`` is the declaration itself, not a look-alike built elsewhere."""
    return _DECLARED.get((op.service, op.name)) is op


# -- the scheduler: job types, jobs, the ledger, school calendars ---------------------------

JOB_TYPES_LIST = declare(
    "scheduler", "job_types.list", NoRequest, list[JobTypeInfo],
    "The job types the running workers advertise, by name.",
)  # fmt: skip
JOBS_CREATE = declare("scheduler", "jobs.create", JobSpec, Job, "Define a job.")
JOBS_LIST = declare(
    "scheduler", "jobs.list", JobsPageRequest, JobsPage,
    "A page of jobs in id order, none of them bigger than one NATS message: page with `after`.",
)  # fmt: skip
JOBS_GET = declare("scheduler", "jobs.get", JobRef, Job, "One job.")
JOBS_DELETE = declare(
    "scheduler", "jobs.delete", JobRef, Deleted, "Delete a job; its history stays."
)
JOBS_PAUSE = declare("scheduler", "jobs.pause", PauseRequest, Job, "Pause a job.")
JOBS_RESUME = declare(
    "scheduler", "jobs.resume", PauseRequest, Job,
    "Resume a job; the occurrences of the pause are recorded as skipped.",
)  # fmt: skip
JOBS_RUN_NOW = declare(
    "scheduler", "jobs.run_now", RunNowRequest, RunNowResult, "Start an occurrence now."
)
JOBS_WHY = declare(
    "scheduler", "jobs.why", WhyRequest, WhyResult,
    "The job's occurrence ledger with reasons and its pauses.",
)  # fmt: skip
JOBS_IMPORT = declare(
    "scheduler", "jobs.import", ImportRequest, ImportResult,
    "Create or change jobs from exported documents, all or none.",
)  # fmt: skip
JOBS_IMPORT_STAGE = declare(
    "scheduler", "jobs.import_stage", ImportStageRequest, ImportResult,
    "Check and stage one batch of a large import; nothing is applied yet.",
)  # fmt: skip
JOBS_IMPORT_FINISH = declare(
    "scheduler", "jobs.import_finish", ImportFinishRequest, ImportFinished,
    "Apply every staged batch of an import in one transaction, or drop them.",
)  # fmt: skip
LEDGER_PURGE = declare(
    "scheduler", "ledger.purge", LedgerPurgeRequest, LedgerPurged,
    "Delete ledger entries older than a number of days.",
)  # fmt: skip
CALENDARS_CREATE = declare(
    "scheduler", "calendars.create", CalendarSpec, Calendar, "Define a school calendar."
)
CALENDARS_LIST = declare(
    "scheduler", "calendars.list", NoRequest, list[CalendarSummary], "Every school calendar."
)
CALENDARS_GET = declare(
    "scheduler", "calendars.get", CalendarRef, Calendar, "One calendar with its days."
)
CALENDARS_DELETE = declare(
    "scheduler", "calendars.delete", CalendarRef, Deleted, "Delete a calendar no job uses."
)
CALENDARS_ADD_DAYS = declare(
    "scheduler", "calendars.add_days", CalendarDays, Calendar,
    "Add non-school days to a calendar, or replace them.",
)  # fmt: skip
CALENDARS_UPDATE = declare(
    "scheduler", "calendars.update", CalendarUpdate, Calendar, "Change a calendar's description."
)
CALENDARS_REMOVE_DAYS = declare(
    "scheduler", "calendars.remove_days", CalendarDayRefs, Calendar,
    "Take non-school days out of a calendar.",
)  # fmt: skip
CALENDARS_DIFF = declare(
    "scheduler", "calendars.diff", CalendarDiffRequest, CalendarDiff,
    "What a calendar change would do to its jobs' runs (moved, skipped, added); nothing is saved.",
)  # fmt: skip

JOBS_BACKFILL = declare(
    "scheduler", "jobs.backfill", BackfillRequest, BackfillResult,
    "Run the occurrences the job's schedule had in a past range, each at most once.",
)  # fmt: skip
JOBS_DECIDE = declare(
    "scheduler", "jobs.decide", DecisionRequest, DecisionResult,
    "Answer a catch-up decision (policy ask): run the latest, all or none of the missed runs.",
)  # fmt: skip
DECISIONS_LIST = declare(
    "scheduler", "decisions.list", DecisionsRequest, list[PendingDecision],
    "The jobs whose missed occurrences await a decision.",
)  # fmt: skip

# -- history: runs and their output ---------------------------------------------------------

RUNS_LIST = declare(
    "history", "runs.list", RunQuery, list[RunRecord], "Runs, newest first, filtered."
)
RUNS_PAGE = declare(
    "history", "runs.page", RunsPageRequest, RunsPage,
    "A keyset page of runs, sorted, searched and filtered in SQL: page with `cursor`.",
)  # fmt: skip
RUNS_LAST = declare(
    "history", "runs.last", LastRunsRequest, list[RunRecord],
    "The latest run of each of the given jobs (those with none are left out), in one query.",
)  # fmt: skip
RUNS_GET = declare("history", "runs.get", RunRef, RunRecord, "One run with its output.")
RUNS_PURGE = declare(
    "history", "runs.purge", PurgeRequest, PurgeResult,
    "Delete runs finished before their job's retention.",
)  # fmt: skip
RUNS_RELEASE = declare(
    "history", "runs.release", ReleaseRequest, Release,
    "Release a held run once; a second release answers the first, with first=false.",
)  # fmt: skip
RUNS_RELEASE_STARTED = declare(
    "history", "runs.release_started", ReleaseStarted, Release,
    "Record the run started to apply a release.",
)  # fmt: skip
RUNS_RELEASES = declare(
    "history", "runs.releases", ReleasesQuery, list[Release],
    "The releases of a job's held runs, newest first.",
)  # fmt: skip

# -- the integration worker: the OneRoster provider's reads ----------------------------------

ONEROSTER_READ = declare(
    "integration", "oneroster.read", RosterQuery, RosterPage,
    "A page of OneRoster 1.2 records (or one) read from the SIS, filtered, sorted and selected "
    "as the REST binding asks; never bigger than one NATS message.",
)  # fmt: skip
