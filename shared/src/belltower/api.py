"""Request and reply types of the management API (NATS request-reply).

Every reply is a :class:`Reply`: ``ok`` with a ``result``, or not ok with an ``error`` that names
the field and the accepted form. The CLI, the console and scripts all speak this.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from .events import EmailOn
from .schedule import Schedule
from .seedtasks import SeedTask

CatchUp = Literal["latest", "all", "skip", "ask"]
"""``ask``: the missed occurrences wait in the ledger ``awaiting`` a person's decision
(``belltower jobs decide``), which expires after ``BELLTOWER_SCHEDULER_DECISION_TTL_S``."""
Overlap = Literal["skip", "buffer", "allow"]
ChainOn = Literal["succeeded", "failed", "finished"]


class RetryBackoff(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Wait ``initial_s`` before the first retry, then ``factor`` times longer each time, at most ``max_s``."""

    initial_s: float = 10.0
    factor: float = 2.0
    max_s: float = 600.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, retry - 1))


class After(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Chaining: run this job ``delay_s`` after an occurrence of job ``job`` ends as ``on`` says."""

    job: str
    on: ChainOn = "succeeded"
    delay_s: float = 0.0


CONCURRENCY_KEY_MAX = 300
"""Characters of a concurrency key, as a job's params render it."""
CONCURRENCY_LIMIT_MAX = 1_000
"""The largest ``concurrency_limit``: runs at once of the jobs sharing a key."""


class RunPolicy(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """How a job's occurrences run: catch-up after downtime, overlap, retries, chaining.

    Stored as one JSON document per job; frozen so jobs with the same policy share one object.
    """

    catch_up: CatchUp = "latest"
    catch_up_window_s: float = 86_400.0
    catch_up_max: int = 10
    overlap: Overlap = "skip"
    retries: int = 0
    retry_backoff: RetryBackoff = RetryBackoff()
    max_deliveries: int | None = None
    after: After | None = None
    max_runs: int | None = None
    alert_after_failures: int | None = None
    pause_after_failures: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    @property
    def deliveries(self) -> int:
        """Most deliveries of one occurrence before it is dead-lettered: by default the retries plus 3."""
        return self.max_deliveries if self.max_deliveries is not None else self.retries + 3


class JobSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user gives to define a job.

    Run policies: ``catch_up`` after the scheduler was down (``latest`` runs the latest missed
    occurrence once, ``all`` runs those within ``catch_up_window_s`` up to ``catch_up_max``,
    ``skip`` runs none, ``ask`` holds them until a person decides; each missed one is
    recorded), ``overlap`` while the previous run is
    still going (``skip``, ``buffer`` one, ``allow``), ``retries`` with ``retry_backoff``,
    ``max_deliveries`` before a run is dead-lettered, and ``after`` to chain on another job.

    Job state (``jobstate.md``): ``max_runs`` ends the job (it is paused, noted "max runs
    reached") once that many of its occurrences were dispatched (run-now not counted);
    ``alert_after_failures`` sends the failing alert after that many consecutive failed runs,
    ``pause_after_failures`` pauses the job after that many.

    Limits per target (``limits.md``): ``concurrency_key`` (a literal or a template over the
    params, e.g. ``canvas:{base_url}``) with ``concurrency_limit``: at most that many runs of
    every job with the same key at once; the others wait in the ledger, in priority order.
    Left out, the job type's own key and limit apply (when it declares one). A notifier's
    rate (messages per second through its mail relay) is its ``send_rate`` parameter.
    """

    type: str
    title: str
    schedule: Schedule
    priority: int = 500
    params: dict[str, Any] = {}
    paused: bool = False
    keep_history_days: int | None = 30
    timeout_s: float | None = None
    result_emails: list[str] = []
    result_email_on: EmailOn = "default"
    catch_up: CatchUp = "latest"
    catch_up_window_s: float = 86_400.0
    catch_up_max: int = 10
    overlap: Overlap = "skip"
    retries: int = 0
    retry_backoff: RetryBackoff = RetryBackoff()
    max_deliveries: int | None = None
    after: After | None = None
    max_runs: int | None = None
    alert_after_failures: int | None = None
    pause_after_failures: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    def policy(self) -> RunPolicy:
        return RunPolicy(
            catch_up=self.catch_up,
            catch_up_window_s=self.catch_up_window_s,
            catch_up_max=self.catch_up_max,
            overlap=self.overlap,
            retries=self.retries,
            retry_backoff=self.retry_backoff,
            max_deliveries=self.max_deliveries,
            after=self.after,
            max_runs=self.max_runs,
            alert_after_failures=self.alert_after_failures,
            pause_after_failures=self.pause_after_failures,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
        )


class Job(msgspec.Struct, kw_only=True):
    """A stored job definition, as the API returns it."""

    id: str
    title: str
    type: str
    pool: str
    params: dict[str, Any]
    schedule: Schedule
    schedule_text: str
    priority: int
    paused: bool
    next_run_at: datetime | None
    keep_history_days: int | None
    timeout_s: float | None
    type_installed: bool
    created_at: datetime
    updated_at: datetime
    result_emails: list[str] = []
    result_email_on: EmailOn = "default"
    catch_up: CatchUp = "latest"
    catch_up_window_s: float = 86_400.0
    catch_up_max: int = 10
    overlap: Overlap = "skip"
    retries: int = 0
    retry_backoff: RetryBackoff = RetryBackoff()
    max_deliveries: int | None = None
    after: After | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None
    pause_note: str | None = None
    """Why it is paused: the note of whoever paused it, or the reason Belltower paused it
    itself ("max runs reached", "paused after 5 consecutive failures")."""
    max_runs: int | None = None
    alert_after_failures: int | None = None
    pause_after_failures: int | None = None
    runs_counted: int | None = None
    """With ``max_runs``: occurrences dispatched so far that count (the ledger's)."""
    runs_left: int | None = None
    failure_streak: int = 0
    """Consecutive failed runs up to the latest finished one (0 after a success)."""
    expected_duration_s: float | None = None
    """p95 of the durations of the job's latest succeeded runs (``expected_duration_runs`` of them)."""
    expected_duration_runs: int = 0
    overdue_after_s: float | None = None
    """A run going longer than this raises ``belltower.run.overdue`` (None until enough runs)."""
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    concurrency_key_value: str | None = None
    """The key as this job's params render it (``canvas:https://school.instructure.com``)."""
    concurrency_running: int | None = None
    """Runs of every job with that key in flight now (the ledger's)."""
    concurrency_waiting: int | None = None
    """Occurrences of jobs with that key waiting for one of them to finish."""


class JobTypeInfo(msgspec.Struct, kw_only=True):
    """What a worker advertises about a job type it can run."""

    name: str
    pool: str
    title: str
    description: str
    params_schema: dict[str, Any]
    timeout_s: float | None = None
    family: str = ""
    """The catalog family it is listed under (Notifiers, Rostering and LMS, ...)."""
    seeds: list[SeedTask] = []
    """The seed task(s) it implements; empty for a job type that is Belltower's own."""
    concurrency_key: str | None = None
    """The target its runs share (a template over the params, e.g. ``sftp:{host}``), and
    ``concurrency_limit`` runs of it at once: what a job of this type gets unless it sets its own."""
    concurrency_limit: int | None = None


class JobRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str


class RunNowRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    requested_by: str | None = None
    requested_from: str | None = None
    """The client address the request came from (the console sets it), shown with ``requested_by``."""
    force: bool = False
    """Run now even though a run of the job is still going and its overlap policy would refuse
    (skip) or queue (buffer) this one; the ledger records that the policy was overridden."""


PAUSE_NOTE_MAX = 500


class PauseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Pause or resume a job, saying who asked and from where (kept in the pause ledger), and
    on a pause why (``note``: one line of at most ``PAUSE_NOTE_MAX`` characters)."""

    id: str
    requested_by: str | None = None
    requested_from: str | None = None
    note: str | None = None


class WhyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ledger of one job between ``since`` and ``until`` (scheduled instants), newest first."""

    id: str
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200


class LedgerEntry(msgspec.Struct, kw_only=True):
    """One occurrence and what became of it.

    ``state``: dispatched, pending (being published), waiting (buffered behind a run in flight,
    or, cause ``concurrency``, for a slot of its concurrency key: ``limits.md``), delayed (chained, waiting for its delay), awaiting (a missed run of a job with catch-up
    ask, until someone decides), skipped, missed, coalesced or lost (dispatched, never started
    although published again); ``cause`` a stable code (overlap, paused,
    end_passed, catch_up, deleted, lost, ...) and ``reason`` the sentence. ``recovery_attempts``:
    how often the reconciler published it again because no worker had started it.
    """

    occurrence_id: str
    run_id: str | None
    scheduled_for: datetime
    trigger: str
    state: str
    cause: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    requested_from: str | None = None
    chained_from: str | None = None
    dispatched_at: datetime | None = None
    run_status: str | None = None
    run_error: str | None = None
    run_finished_at: datetime | None = None
    recovery_attempts: int = 0


class PauseSpan(msgspec.Struct, kw_only=True):
    paused_at: datetime
    paused_by: str | None = None
    paused_from: str | None = None
    resumed_at: datetime | None = None
    resumed_by: str | None = None
    resumed_from: str | None = None
    note: str | None = None


class WhyResult(msgspec.Struct, kw_only=True):
    """Answers "why didn't my job run?": the job's state, its pauses and its ledger."""

    job_id: str
    title: str
    paused: bool
    next_run_at: datetime | None
    schedule_text: str
    schedule_end: datetime | None
    since: datetime | None
    until: datetime | None
    occurrences: list[LedgerEntry]
    pauses: list[PauseSpan]
    on_demand: bool = False
    """The job has no schedule of its own: it runs only when started by hand or chained."""


class RunNowResult(msgspec.Struct, kw_only=True):
    """``state`` "dispatched", or "waiting" when the job's overlap policy (buffer) queued the run
    behind one still going; ``note`` says which, and ``dispatched_at`` is then when it was asked."""

    job_id: str
    occurrence_id: str
    run_id: str
    dispatched_at: datetime
    state: Literal["dispatched", "waiting"] = "dispatched"
    note: str | None = None


class RunRecord(msgspec.Struct, kw_only=True):
    """One run of one occurrence, as history stores it."""

    run_id: str
    occurrence_id: str
    job_id: str
    job_type: str
    job_title: str
    status: str
    trigger: str
    requested_by: str | None
    priority: int
    scheduled_for: datetime
    dispatched_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    attempt: int
    worker: str
    summary: str
    output_text: str
    output_html: str | None
    error: str | None
    trace_id: str | None
    progress_done: int | None = None
    progress_total: int | None = None
    progress_message: str | None = None
    requested_from: str | None = None

    @property
    def waited_s(self) -> float | None:
        """Seconds between its time and its dispatch when over a second: it waited (for its
        concurrency key's slot, its buffered run, the scheduler; ``jobs why`` says which)."""
        waited = (self.dispatched_at - self.scheduled_for).total_seconds()
        return waited if waited >= 1 else None


class RunQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    job_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0
    include_output: bool = False


RUNS_PAGE_MAX = 1_000


class RunsPageRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A keyset page of runs (``runs.page``): filtered like :class:`RunQuery`, searched with
    ``q`` (text in the job's title or the run's summary), sorted by ``sort`` (scheduled_for,
    finished_at or duration_ms, ``-`` first descends; default newest first) and paged with the
    ``cursor`` or ``prev_cursor`` a page gave. At most ``limit`` runs and what one NATS
    message carries."""

    job_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""
    sort: str = "-scheduled_for"
    cursor: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=RUNS_PAGE_MAX)] = 50
    include_output: bool = False


class LastRunsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The latest run of each of these jobs (``runs.last``): what a page of the Jobs tab shows."""

    job_ids: Annotated[list[str], msgspec.Meta(max_length=RUNS_PAGE_MAX)]


class RunsPage(msgspec.Struct, kw_only=True):
    """One page of runs with the cursors of the pages after and before it (None at an end)."""

    runs: list[RunRecord]
    cursor: str | None = None
    prev_cursor: str | None = None


class RunRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    run_id: str


class PurgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Delete runs finished before their job's retention: ``keep_days`` per job id, else ``default_days``."""

    keep_days: dict[str, int | None] = {}
    default_days: int | None = None
    dry_run: bool = False


class PurgeResult(msgspec.Struct, kw_only=True):
    deleted: int
    by_job: dict[str, int] = {}


class LedgerPurgeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    older_than_days: int
    dry_run: bool = False


class NonSchoolDay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One day without school in a calendar, with what it is (e.g. "Winter break")."""

    day: date
    label: str = ""


class CalendarSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user gives to define a school calendar; ``days`` may be added later too."""

    name: str
    description: str = ""
    days: list[NonSchoolDay] = []


class CalendarDays(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Non-school days to add to a calendar; ``replace`` drops the days it had first (re-import)."""

    name: str
    days: list[NonSchoolDay]
    replace: bool = False


class CalendarRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str


class CalendarUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A calendar's fields to change (its days change through add_days and remove_days)."""

    name: str
    description: str


class CalendarDayRefs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Non-school days to take out of a calendar; a day it does not have is no error."""

    name: str
    days: list[date]


class Calendar(msgspec.Struct, kw_only=True):
    """A stored school calendar, its non-school days in order, and the jobs that use it."""

    name: str
    description: str
    days: list[NonSchoolDay]
    jobs: list[str]
    created_at: datetime
    updated_at: datetime


class JobDocument(JobSpec, kw_only=True, forbid_unknown_fields=True):
    """A job definition as exported and imported: the spec, plus the id it keeps across a round trip."""

    id: str | None = None


class ImportRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Documents are decoded one by one by the scheduler, so each error names its document."""

    documents: list[Any]
    dry_run: bool = False


IMPORT_BATCH = 500
"""Documents per ``jobs.import_stage`` request: a batch and its reply stay far below 1 MB."""


class ImportStageRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One batch of a large import: its documents, the index of its first one in the whole
    file (``offset``, so errors name the document), and the import's id (a UUID the client
    makes). The documents are checked and staged; nothing is applied until
    ``jobs.import_finish``."""

    import_id: str
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    documents: Annotated[list[Any], msgspec.Meta(max_length=IMPORT_BATCH)]


class ImportFinishRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Apply every staged batch of the import in one transaction (``commit``), or drop them."""

    import_id: str
    commit: bool = True


class ImportFinished(msgspec.Struct, kw_only=True):
    """What finishing a staged import did: applied (or dropped) and how many of each."""

    applied: bool
    created: int = 0
    changed: int = 0
    unchanged: int = 0


class ImportItem(msgspec.Struct, kw_only=True):
    index: int
    action: str
    """``create``, ``change`` or ``unchanged``."""
    id: str
    title: str


class FieldError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One refused field of one document (``index`` is None outside an import)."""

    field: str
    message: str
    accepted: str | None = None
    index: int | None = None


class ImportResult(msgspec.Struct, kw_only=True):
    """``applied`` only when there is no error and it was not a dry run: all or nothing."""

    dry_run: bool
    applied: bool
    items: list[ImportItem] = []
    errors: list[FieldError] = []


JOBS_PAGE_MAX = 1_000


class JobsPageRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A page of jobs: at most ``limit`` of them and at most what one NATS message carries.

    In id order, page with ``after`` (the job id the last page ended with). Sorted another way
    (``sort``: id, title, type, schedule, next_run_at, priority or state, ``-`` first descends)
    or filtered (``q`` in the title, type or id; one ``type``; ``state`` active, paused or
    not_installed), page with ``cursor``: the ``cursor`` or ``prev_cursor`` a page gave.
    ``total`` also counts the jobs that match.
    """

    after: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=JOBS_PAGE_MAX)] = 500
    sort: str = "id"
    q: str = ""
    type: str = ""
    state: str = ""
    cursor: str | None = None
    total: bool = False


class JobsPage(msgspec.Struct, kw_only=True):
    """One page of jobs; ``next`` is the ``after`` of the following page in id order (None on
    the last), ``cursor`` and ``prev_cursor`` the pages after and before it in any order."""

    jobs: list[Job]
    next: str | None = None
    cursor: str | None = None
    prev_cursor: str | None = None
    total: int | None = None


class NoRequest(msgspec.Struct, kw_only=True):
    """The request of an operation that takes none (a list of everything); sent as ``{}``."""


class Deleted(msgspec.Struct, kw_only=True):
    """What a delete removed: the job id or the calendar name."""

    deleted: str


class LedgerPurged(msgspec.Struct, kw_only=True):
    """Ledger entries deleted (or that would be, on a dry run)."""

    deleted: int


class CalendarSummary(msgspec.Struct, kw_only=True):
    """A school calendar in a list: its number of non-school days, not the days."""

    name: str
    description: str
    days: int
    updated_at: datetime


CALENDAR_DIFF_MAX_DAYS = 366


class CalendarDiffRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A calendar change not yet saved: days to add (with ``replace``, the calendar's only days)
    and days to take out; the reply says what it does to the runs of the next ``days`` days
    after ``from`` (default now) of every job that uses the calendar."""

    name: str
    add_days: list[NonSchoolDay] = []
    remove_days: list[date] = []
    replace: bool = False
    days: Annotated[int, msgspec.Meta(ge=1, le=CALENDAR_DIFF_MAX_DAYS)] = 30
    since: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(
        default=None, name="from"
    )


class CalendarRunChange(msgspec.Struct, kw_only=True):
    """One run the change affects: ``moved`` (from ``before`` to ``after``), ``skipped`` (ran at
    ``before``, would not) or ``added`` (would run at ``after``); ``scheduled_for`` is the rule's
    instant, ``reason`` the engine's word for it."""

    job_id: str
    job_title: str
    change: Literal["moved", "skipped", "added"]
    scheduled_for: datetime
    before: datetime | None = None
    after: datetime | None = None
    reason: str | None = None


class CalendarDiff(msgspec.Struct, kw_only=True):
    """What a calendar change would do between ``from`` and ``until``: the days it adds and
    removes, how many jobs use the calendar (``paused_jobs`` of them paused, left out), the
    counts of moved, skipped and added runs, and the runs themselves in order
    (``truncated``: more than one reply holds, or a schedule too busy to follow to the end)."""

    calendar: str
    since: datetime = msgspec.field(name="from")
    until: datetime
    days_added: list[date]
    days_removed: list[date]
    jobs: int
    paused_jobs: int
    jobs_affected: int
    moved: int
    skipped: int
    added: int
    changes: list[CalendarRunChange]
    truncated: bool = False


class CalendarImport(msgspec.Struct, kw_only=True):
    """What an iCalendar import did: how many days the file gave, and the calendar after it."""

    imported: int
    calendar: Calendar


class PreviewOccurrence(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One occurrence of a previewed schedule: ``at`` in the schedule's zone, ``skipped`` with its
    ``reason`` when it would not run, ``note`` when it was adjusted (DST, moved past a non-school
    day) and ``nominal`` when its instant differs from the rule's."""

    at: datetime
    utc: datetime
    rule: str
    skipped: bool
    reason: str | None
    note: str | None = None
    nominal: datetime | None = None


class SchedulePreviewRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A schedule to try out without a job: its next ``count`` runnable occurrences after
    ``from`` (default now), with the skipped ones between."""

    schedule: Schedule
    since: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(
        default=None, name="from"
    )
    count: int = 10


class SchedulePreview(msgspec.Struct, kw_only=True):
    """The schedule in words, from when, and its occurrences (none for an on-demand one)."""

    description: str
    since: datetime = msgspec.field(name="from")
    occurrences: list[PreviewOccurrence]
    on_demand: bool = False


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    accepted: str | None = None


T = TypeVar("T")


class Reply(msgspec.Struct, Generic[T], kw_only=True, omit_defaults=True):
    """``Reply[Job]`` decodes the reply of an operation whose result is a :class:`Job`."""

    ok: bool
    result: T | None = None
    error: ErrorBody | None = None


encoder = msgspec.json.Encoder()
