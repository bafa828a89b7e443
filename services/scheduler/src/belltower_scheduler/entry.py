"""What the dispatcher keeps in memory about each job: an :class:`Entry` per job, the specs and
compiled schedules many jobs share, and the encoded params a due message carries."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import msgspec
from asyncpg import Record

from belltower.api import RunPolicy
from belltower.events import ResultMail
from belltower.schedule import (
    CompiledSchedule,
    Schedule,
    compile_schedule,
    is_spread,
    schedule_decoder,
    schedule_encoder,
)

from .store import JobRow, decode_result_mail, policy_decoder


@lru_cache(maxsize=65_536)
def _compiled(
    schedule_json: bytes, non_school_days: frozenset[date], spread_key: str
) -> CompiledSchedule:
    """Jobs with the same schedule (and calendar days) share one compiled form; a schedule
    with ``H`` fields is compiled per job (``spread_key``, the job id, picks the values)."""
    return compile_schedule(
        msgspec.json.decode(schedule_json, type=Schedule),
        non_school_days=non_school_days,
        spread_key=spread_key,
    )


def compiled_for(
    schedule: Schedule, non_school_days: frozenset[date] = frozenset(), spread_key: str = ""
) -> CompiledSchedule:
    key = spread_key if is_spread(schedule) else ""
    return _compiled(schedule_encoder.encode(schedule), non_school_days, key)


def for_job(compiled: CompiledSchedule, job_id: str) -> CompiledSchedule:
    """A shared compiled form made this job's own when its schedule has ``H`` fields."""
    if compiled.spread_key == job_id or not is_spread(compiled.schedule):
        return compiled
    return compiled_for(compiled.schedule, compiled.non_school_days, job_id)


@lru_cache(maxsize=65_536)
def compiled_for_text(schedule_text: str) -> CompiledSchedule:
    """The compiled form of a schedule as PostgreSQL prints it (jsonb prints equal values
    alike): loading a million jobs decodes each distinct schedule once, not once per job."""
    return compiled_for(schedule_decoder.decode(schedule_text))


_EMPTY_PARAMS = b"{}"


@lru_cache(maxsize=4_096)
def _policy(text: str) -> RunPolicy:
    """Jobs with the same policy share one (frozen) object."""
    return policy_decoder.decode(text)


def _params_json(params: Any) -> bytes:
    """A job's params as the compact JSON the due message carries, encoded once per job.

    Exactly ``msgspec.json.encode`` of the decoded dict (same key order, same number forms), so
    the message bytes are what encoding the dict at publish time gave; keeping bytes instead of
    a dict saves a few hundred bytes per job and the encoding at each dispatch.
    """
    if isinstance(params, str):
        params = msgspec.json.decode(params)
    encoded = msgspec.json.encode(params)
    return _EMPTY_PARAMS if encoded == _EMPTY_PARAMS else encoded


@dataclass(frozen=True, slots=True)
class EntrySpec:
    """What a job has in common with many others: its type, pool, priority, timeout, run
    policy, result mail and whether it is paused. Equal specs are one shared object (see
    :func:`job_spec`), so each :class:`Entry` holds one reference instead of seven."""

    type: str
    pool: str
    priority: int
    timeout_s: float | None
    policy: RunPolicy
    result_mail: ResultMail | None
    paused: bool


@lru_cache(maxsize=4_096, typed=True)
def job_spec(
    job_type: str,
    pool: str,
    priority: int,
    timeout_s: float | None,
    policy: RunPolicy,
    result_mail: ResultMail | None,
    paused: bool,
) -> EntrySpec:
    """The shared spec for these values (typed: a timeout of 1.0 stays a float on the wire)."""
    return EntrySpec(
        sys.intern(job_type), sys.intern(pool), priority, timeout_s, policy, result_mail, paused
    )


@lru_cache(maxsize=4_096, typed=True)
def _spec_from_text(
    job_type: str,
    pool: str,
    priority: int,
    timeout_s: float | None,
    policy: str,
    result_mail: str | None,
    paused: bool,
) -> EntrySpec:
    """:func:`job_spec` from the columns as a ``scheduler.jobs`` record holds them: a million
    rows with a handful of distinct combinations decode each policy and result mail once."""
    return job_spec(
        job_type,
        pool,
        priority,
        timeout_s,
        _policy(policy),
        decode_result_mail(result_mail),
        paused,
    )


@dataclass(slots=True)
class Entry:
    """What the dispatcher keeps in memory about one job: up to a million of these live at once.

    Only what differs from job to job has a slot of its own; the rest is the shared ``spec``,
    read through properties of the same names. ``queued`` is the due-queue bucket the entry is
    waiting in (see ``due.py``), or None.
    """

    id: str
    title: str
    params_json: bytes
    schedule: CompiledSchedule
    next_due: datetime | None
    spec: EntrySpec
    queued: list[Entry] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.spec.type

    @property
    def pool(self) -> str:
        return self.spec.pool

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def timeout_s(self) -> float | None:
        return self.spec.timeout_s

    @property
    def policy(self) -> RunPolicy:
        return self.spec.policy

    @property
    def result_mail(self) -> ResultMail | None:
        return self.spec.result_mail

    @property
    def paused(self) -> bool:
        return self.spec.paused

    @classmethod
    def from_row(cls, row: JobRow) -> Entry:
        return cls(
            id=row.id,
            title=row.title,
            params_json=_params_json(row.params),
            schedule=compiled_for(row.schedule, spread_key=row.id),
            next_due=row.next_run_at,
            spec=job_spec(
                row.type,
                row.pool,
                row.priority,
                row.timeout_s,
                row.policy,
                row.result_mail,
                row.paused,
            ),
        )

    @classmethod
    def from_record(cls, r: Record) -> Entry:
        """Straight from a ``scheduler.jobs`` record (see ``Store.job_pages``), without a JobRow.

        Params stay encoded; the spec is shared with every job that has the same values.
        """
        return cls(
            r["id"],
            r["title"],
            _params_json(r["params"]),
            for_job(compiled_for_text(r["schedule"]), r["id"]),
            r["next_run_at"],
            _spec_from_text(
                r["type"],
                r["pool"],
                r["priority"],
                r["timeout_s"],
                r["policy"],
                r["result_mail"],
                r["paused"],
            ),
        )
