"""The job-type SDK: how a kind of work is declared, and what it gets when it runs.

A job type has a dotted name, the pool of workers that runs it, a title and description for
the catalog, a msgspec Struct of parameters (with defaults; exported as JSON Schema so the
scheduler can validate definitions and the console can draw forms) and ``async run(ctx, params)``.

    registry = Registry()

    class CleanupParams(msgspec.Struct):
        days: int = 30

    @registry.job_type("files.cleanup", pool="integration", title="Cleanup", params=CleanupParams)
    async def cleanup(ctx: JobContext, params: CleanupParams) -> None:
        ctx.output.line(f"looking for files older than {params.days} days")
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from .api import JobTypeInfo
from .errors import InvalidInput
from .events import MAX_OUTPUT_CHARS
from .seedtasks import family_of, seed_of
from .subjects import JOB_TYPE_FORM, JOB_TYPE_NAME, POOLS, Pool

if TYPE_CHECKING:
    import asyncpg

    from .mail import Mailer
    from .rpc import ApiClient
    from .settings import Settings

P = TypeVar("P", bound=msgspec.Struct)


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """For job types that take no parameters."""


@dataclass(frozen=True, slots=True)
class JobType(Generic[P]):
    name: str
    pool: Pool
    title: str
    description: str
    params: type[P]
    run: Callable[[JobContext, P], Awaitable[None]]
    timeout_s: float | None = None
    concurrency_key: str | None = None
    """The target its runs share (``sftp:{host}``), at most ``concurrency_limit`` at once:
    what its jobs get unless they set their own (``limits.md``)."""
    concurrency_limit: int | None = None

    def info(self) -> JobTypeInfo:
        return JobTypeInfo(
            name=self.name,
            pool=self.pool,
            title=self.title,
            description=self.description,
            params_schema=msgspec.json.schema(self.params),
            timeout_s=self.timeout_s,
            family=family_of(self.name),
            seeds=list(seed_of(self.name)),
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
        )

    def decode_params(self, raw: dict[str, Any]) -> P:
        from .rpc import invalid_from_msgspec

        try:
            return msgspec.convert(raw, self.params, strict=False)
        except msgspec.ValidationError as exc:
            raise invalid_from_msgspec(exc, prefix="param.") from None


@dataclass
class Registry:
    """The job types one worker process can run."""

    _types: dict[str, JobType[Any]] = field(default_factory=dict)

    def register(self, job_type: JobType[Any]) -> JobType[Any]:
        if not JOB_TYPE_NAME.match(job_type.name):
            raise InvalidInput("name", f"{job_type.name!r} is not a job type name", JOB_TYPE_FORM)
        if job_type.pool not in POOLS:
            raise InvalidInput("pool", f"{job_type.pool!r} is not a pool", " or ".join(POOLS))
        if job_type.name in self._types:
            raise InvalidInput("name", f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type
        return job_type

    def job_type(
        self,
        name: str,
        *,
        pool: Pool,
        title: str,
        description: str = "",
        params: type[P] = NoParams,  # type: ignore[assignment]
        timeout_s: float | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
    ) -> Callable[[Callable[[JobContext, P], Awaitable[None]]], JobType[P]]:
        def decorate(fn: Callable[[JobContext, P], Awaitable[None]]) -> JobType[P]:
            doc = description or (fn.__doc__ or "").strip()
            return self.register(
                JobType(
                    name, pool, title, doc, params, fn, timeout_s, concurrency_key,
                    concurrency_limit,
                )
            )  # fmt: skip

        return decorate

    def get(self, name: str) -> JobType[Any] | None:
        return self._types.get(name)

    def for_pool(self, pool: str) -> list[JobType[Any]]:
        return [t for t in self._types.values() if t.pool == pool]

    def __iter__(self) -> Iterator[JobType[Any]]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)


class Output:
    """What a run reports: plain text lines, optional HTML, and a one-line summary.

    Kept under a size limit so a chatty job cannot flood history; what is cut is said.
    """

    def __init__(self, limit: int = MAX_OUTPUT_CHARS) -> None:
        self._text: list[str] = []
        self._html: list[str] = []
        self._size = 0
        self._limit = limit
        self._cut = 0
        self.summary = ""

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        room = self._limit - self._size
        if room <= 0:
            self._cut += len(text)
            return
        kept = text[:room]
        self._cut += len(text) - len(kept)
        self._text.append(kept)
        self._size += len(kept)

    def html(self, fragment: str) -> None:
        """Add an HTML fragment; text written with ``line`` is shown as text when no HTML is given."""
        self._html.append(fragment)

    @property
    def text(self) -> str:
        body = "".join(self._text)
        if self._cut:
            body += f"\n[output cut: {self._cut} more characters were not kept]\n"
        return body

    @property
    def html_text(self) -> str | None:
        if not self._html:
            return None
        doc = "".join(self._html)
        return doc[: self._limit]

    @staticmethod
    def escape(text: str) -> str:
        return html.escape(text)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 file``, ``2 files``, ``1 ledger entry``, ``3 ledger entries``: for run output."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


ProgressFn = Callable[[int | None, int | None, str], Awaitable[None]]


class Database:
    """The run's way to the database: a pool created on first use and shared by the worker."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            from .db import create_pool

            self._pool = await create_pool(self.url)
        return self._pool

    @property
    def opened(self) -> asyncpg.Pool | None:
        """The pool if a run has opened it, else None (for readiness checks)."""
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


@dataclass(slots=True)
class JobContext:
    """Everything a running job may use: who it is, where to report, what it may touch."""

    run_id: str
    occurrence_id: str
    job_id: str
    job_title: str
    job_type: str
    trigger: str
    requested_by: str | None
    scheduled_for: datetime
    attempt: int
    deadline: float
    log: logging.LoggerAdapter[logging.Logger]
    output: Output
    settings: Settings
    db: Database
    mailer: Mailer
    api: ApiClient
    _progress: ProgressFn

    def remaining(self) -> float:
        """Seconds left before the run's timeout."""
        return max(0.0, self.deadline - time.monotonic())

    async def progress(
        self, done: int | None = None, total: int | None = None, message: str = ""
    ) -> None:
        """Report progress on long work; history and the console show the latest report."""
        await self._progress(done, total, message)
