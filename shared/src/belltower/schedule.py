"""The schedule engine: what a schedule is, how it is validated, and when it fires next.

Pure logic with no I/O, shared by the scheduler (dispatch), the CLI (validation before a request
is sent) and previews. Calendar rules (daily, weekly, monthly, cron, RRULE) produce local
wall-clock times, which are turned into instants by the schedule's daylight-saving policy. The
defaults are Debian cron's: a fixed local time inside the spring-forward gap fires once at the end
of the gap, one inside the repeated autumn hour fires once, on its first pass; cron lines with a
wildcard minute or hour (and RRULEs that repeat hourly or faster) follow the wall clock, so their
times in the gap do not happen and those in the repeated hour happen twice. Intervals count
elapsed time and ignore DST. Cron expressions are expanded by cronsim, RRULEs by dateutil.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import count as counter
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec
from cronsim import CronSim, CronSimError
from dateutil import rrule as _rrule

from .errors import InvalidInput

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CRON_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\Z")
_UNTIL = re.compile(r"UNTIL=(\d{8}(?:T\d{6})?)Z", re.IGNORECASE)
_ORDINALS = {"1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "last": -1}

EVERY_FORM = "a number with a unit, e.g. 30s, 5m, 2h, 1d or 1h30m; at least 1s"
CRON_FORM = (
    "5 fields 'minute hour day-of-month month day-of-week', or 6 with seconds first, "
    "e.g. '*/5 * * * *' or '0 30 7 * * mon-fri'"
)
TIME_FORM = "HH:MM on a 24-hour clock, e.g. 07:30"
TIMES_FORM = "one or more HH:MM times on a 24-hour clock, comma-separated, e.g. 07:30,12:00"
WEEKDAYS_FORM = "a comma-separated list of mon, tue, wed, thu, fri, sat, sun"
TZ_FORM = "an IANA time zone name, e.g. America/New_York or Europe/London"
DATETIME_FORM = (
    "ISO 8601, e.g. 2026-09-01T07:30 (in the schedule's time zone) or 2026-09-01T07:30:00+02:00"
)
MONTHLY_FORM = (
    "a day of the month 1-31, 'last' (the last day), or an ordinal and a weekday such as "
    "'2nd-tue' or 'last-fri' (ordinals 1st, 2nd, 3rd, 4th, 5th, last)"
)
RRULE_FORM = (
    "an iCalendar RRULE (RFC 5545) such as 'FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=7;BYMINUTE=30'; "
    "DTSTART is the schedule's start (or midnight 2000-01-01 in its time zone)"
)
WINDOW_FORM = "HH:MM-HH:MM in local time, e.g. 07:00-17:00 or 22:00-06:00 across midnight"
JITTER_FORM = "a duration such as 30s or 5m, shorter than one day"
DST_GAP_FORM = "run (once, at the end of the gap) or skip"
DST_REPEAT_FORM = "first (first pass), second (second pass) or both"
ON_DEMAND_FORM = (
    "--on-demand alone (no other schedule flag, no start, end, window, weekdays, jitter, DST "
    "choice or calendar), optionally with --after JOB to run when that job finishes"
)
ON_DEMAND_TEXT = "on demand only (run now, or after its upstream job)"
"""How an on-demand schedule is described in lists, previews and the ledger's explanations."""

HORIZON = timedelta(days=366 * 8)
"""How far ahead a schedule is searched for its next runnable occurrence before it is called dead."""

_DEFAULT_RRULE_ANCHOR = datetime(2000, 1, 1)
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)
_FOLD_LOOKBACK = timedelta(hours=3)
_SKIPS_BEFORE_JUMP = 16
_BEFORE_START_SHOWN = 3

# Reasons an occurrence did not run at its nominal time, as previews and the ledger show them.
OUTSIDE_WINDOW = "outside window"
WEEKDAY_FILTERED = "weekday filtered"
NON_SCHOOL_DAY = "non-school day"
MOVED_TO_NEXT_SCHOOL_DAY = "moved to next school day"
DST_GAP_SKIPPED = "DST gap skipped"
BEFORE_START = "before start"
AFTER_END = "after end"
DUPLICATE = "same instant as another occurrence"


class Every(msgspec.Struct, tag="every", tag_field="kind"):
    """Every N seconds of elapsed time, counted from ``start`` (or from the Unix epoch)."""

    seconds: int


class Cron(msgspec.Struct, tag="cron", tag_field="kind"):
    """A cron expression with 5 fields, or 6 with seconds first, in the schedule's time zone."""

    expr: str


class Daily(msgspec.Struct, tag="daily", tag_field="kind"):
    """At one or more local times, on every day or on the listed weekdays."""

    times: list[str]
    weekdays: list[str] | None = None


class Weekly(msgspec.Struct, tag="weekly", tag_field="kind"):
    """On the listed weekdays, at one or more local times."""

    weekdays: list[str]
    times: list[str]


class Monthly(msgspec.Struct, tag="monthly", tag_field="kind", omit_defaults=True):
    """Once a month at one or more local times: on ``day`` (1-31, -1 for the last day), or on
    the ``nth`` (1-5, -1 for the last) ``weekday`` of the month. A day the month lacks is skipped."""

    times: list[str]
    day: int | None = None
    nth: int | None = None
    weekday: str | None = None


class RRule(msgspec.Struct, tag="rrule", tag_field="kind"):
    """An iCalendar recurrence rule, expanded in the schedule's time zone from its start."""

    rule: str


class Once(msgspec.Struct, tag="once", tag_field="kind"):
    """A single run at one instant."""

    at: datetime


class OnDemand(msgspec.Struct, tag="on_demand", tag_field="kind"):
    """No occurrence of its own: the job runs only when started by hand (run now) or, with a
    chaining policy (``after``), when its upstream job finishes."""


Rule = Every | Cron | Daily | Weekly | Monthly | RRule | Once | OnDemand


class Window(msgspec.Struct):
    """Local times of day between which occurrences may run (both ends included); may cross midnight."""

    start: str
    end: str


class Schedule(msgspec.Struct, kw_only=True):
    """When a job runs: a rule, the time zone it is read in, bounds, filters and DST policy.

    ``calendar`` names a school calendar whose non-school days are skipped or, with
    ``on_non_school_day`` "next_school_day", moved to the same local time on the next school day.
    The engine itself takes the days as a set (``compile_schedule(non_school_days=...)``)."""

    rule: Rule
    tz: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    window: Window | None = None
    weekdays: list[str] | None = None
    jitter_s: int = 0
    dst_gap: str | None = None
    dst_repeat: str | None = None
    calendar: str | None = None
    on_non_school_day: str = "skip"


# ---------------------------------------------------------------------------------------------
# Parsing of the forms people type


def parse_every(text: str, field: str = "every", form: str = EVERY_FORM) -> int:
    """``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number of seconds, into whole seconds."""
    value = text.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise InvalidInput(field, f"{text!r} is not a duration", form)
        unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        seconds = sum(int(n) * unit[u.lower()] for n, u in parts)
    if seconds < 1:
        raise InvalidInput(field, f"{text!r} is shorter than one second", form)
    return seconds


def parse_weekdays(text: str, field: str = "weekdays") -> list[str]:
    days = [d.strip().lower()[:3] for d in text.split(",") if d.strip()]
    bad = [d for d in days if d not in WEEKDAYS]
    if not days or bad:
        raise InvalidInput(field, f"{text!r} is not a list of weekdays", WEEKDAYS_FORM)
    return sorted(set(days), key=WEEKDAYS.index)


def parse_times(text: str, field: str) -> list[str]:
    times = [t.strip() for t in text.split(",") if t.strip()]
    for t in times:
        if not _HHMM.match(t):
            raise InvalidInput(field, f"{t!r} is not a time of day", TIMES_FORM)
    if not times:
        raise InvalidInput(field, "no time given", TIMES_FORM)
    return times


def parse_window(text: str) -> Window:
    start, sep, end = text.partition("-")
    if not sep or not _HHMM.match(start.strip()) or not _HHMM.match(end.strip()):
        raise InvalidInput("window", f"{text!r} is not a time window", WINDOW_FORM)
    return Window(start=start.strip(), end=end.strip())


def parse_monthly(text: str, times: list[str]) -> Monthly:
    """``15``, ``last``, ``2nd-tue`` or ``last-fri`` into a Monthly rule at ``times``."""
    value = text.strip().lower()
    if value.isdigit():
        return Monthly(times=times, day=int(value))
    if value == "last":
        return Monthly(times=times, day=-1)
    nth, _, day = value.replace(" ", "-").partition("-")
    if nth in _ORDINALS and day[:3] in WEEKDAYS:
        return Monthly(times=times, nth=_ORDINALS[nth], weekday=day[:3])
    raise InvalidInput("monthly", f"{text!r} is not a day of the month", MONTHLY_FORM)


def zone(name: str, field: str = "tz") -> ZoneInfo:
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput(field, f"unknown time zone {name!r}", TZ_FORM) from None


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    if not name or name not in _known_zones():
        raise ZoneInfoNotFoundError(name)
    return ZoneInfo(name)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def parse_datetime(text: str, tz: str = "UTC", field: str = "at") -> datetime:
    """An ISO 8601 date or date-time; without an offset it is read in ``tz``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(field, f"{text!r} is not a date-time", DATETIME_FORM) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value


# ---------------------------------------------------------------------------------------------
# Occurrences


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One candidate the schedule produced: when it runs (or would have), from which rule, and
    why it does not run if ``skipped`` is set. ``nominal`` is the rule's instant before jitter or
    a move to the next school day; ``note`` explains an adjustment (DST, move) of a runnable one."""

    at: datetime
    nominal: datetime
    rule: str
    skipped: str | None = None
    note: str | None = None


@dataclass(slots=True)
class _Pending:
    occ: Occurrence
    wall: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Source:
    """One wall-clock generator: cron expressions or an RRULE, with its DST defaults."""

    label: str
    cron: str | None = None
    rrule: _rrule.rrule | None = None
    follows_wall_clock: bool = False


# ---------------------------------------------------------------------------------------------
# Validation and evaluation


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    """A validated schedule, ready to answer "when next?" and "what was skipped, and why?".

    ``non_school_days`` are local dates on which occurrences are skipped (``on_non_school_day``
    "skip") or moved to the same local time on the next school day ("next_school_day").
    """

    schedule: Schedule
    tzinfo: ZoneInfo
    crons: tuple[str, ...]
    sources: tuple[_Source, ...] = ()
    window: tuple[time, time] | None = None
    weekdays: frozenset[int] | None = None
    non_school_days: frozenset[date] = frozenset()
    on_non_school_day: str = "skip"
    seed: str = ""
    _jitter: timedelta = field(default=timedelta(0))
    fast: bool = False

    # -- public surface ------------------------------------------------------------------

    def next_after(self, after: datetime) -> datetime | None:
        """The first runnable occurrence strictly after ``after``, in UTC, or None when none is left."""
        return self.next_runnable(after)[0]

    def next_runnable(self, after: datetime) -> tuple[datetime | None, list[Occurrence]]:
        """The first runnable instant strictly after ``after`` (UTC, or None when the schedule is
        over) and the occurrences skipped between the two, each with its reason, for the ledger.

        Long stretches of skips (an every-minute job outside its window) are reported by their
        first few occurrences, then the search jumps to where the filter next lets one through.
        """
        if self.fast:
            return self._fast_next(after), []
        skipped: list[Occurrence] = []
        for occ in self.occurrences(after):
            if occ.skipped is None:
                return occ.at, skipped
            skipped.append(occ)
        return None, skipped

    def _fast_next(self, after: datetime) -> datetime | None:
        """What ``occurrences`` yields first when nothing can be skipped: the dispatcher's hot path.

        Default-DST 5-field cron lines go straight to cronsim, which implements the same Debian
        rules (the unit tests hold the two paths equal)."""
        sched = self.schedule
        if sched.start is not None and after < sched.start:
            after = sched.start - timedelta(microseconds=1)
        rule = sched.rule
        found: datetime | None
        if isinstance(rule, OnDemand):
            return None
        if isinstance(rule, Every):
            anchor = sched.start or _EPOCH
            elapsed = (after - anchor).total_seconds()
            steps = int(elapsed // rule.seconds) + 1
            found = anchor + timedelta(seconds=steps * rule.seconds)
            while found <= after:  # float rounding near a boundary
                found += timedelta(seconds=rule.seconds)
        elif isinstance(rule, Once):
            found = rule.at if rule.at > after else None
        else:
            local = after.astimezone(self.tzinfo)
            found = min(next(CronSim(expr, local)) for expr in self.crons)
        if found is None or (sched.end is not None and found > sched.end):
            return None
        return found.astimezone(UTC)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        for occ in self.occurrences(after):
            if len(out) >= count:
                break
            if occ.skipped is None:
                out.append(occ.at)
        return out

    def preview(self, after: datetime, count: int) -> list[Occurrence]:
        """The next ``count`` runnable occurrences after ``after`` with the skipped ones between."""
        out: list[Occurrence] = []
        runnable = 0
        for occ in self.occurrences(after, explain=True):
            out.append(occ)
            if occ.skipped is None:
                runnable += 1
                if runnable >= count:
                    break
        return out

    def describe(self) -> str:
        return describe(self.schedule)

    # -- the engine ----------------------------------------------------------------------

    def occurrences(self, after: datetime, *, explain: bool = False) -> Iterator[Occurrence]:
        """Every occurrence strictly after ``after`` in order of its instant, runnable or not,
        until the end, the last occurrence, or ``HORIZON`` past ``after`` with nothing runnable."""
        sched = self.schedule
        if isinstance(sched.rule, OnDemand):
            return  # never produces an occurrence by itself
        after = after.astimezone(UTC)
        cursor = after - self._jitter
        start = sched.start.astimezone(UTC) if sched.start else None
        end = sched.end.astimezone(UTC) if sched.end else None
        if start is not None and cursor < start:
            if explain:
                yield from self._before_start(cursor, after, start)
            cursor = start - timedelta(microseconds=1)
        horizon = after + HORIZON
        heap: list[tuple[datetime, int, Occurrence]] = []
        seq = counter()
        last: datetime | None = None
        seen = cursor
        lookback = True
        streak = 0
        while True:
            jump: datetime | None = None
            ended = False
            for frontier, cands in self._raw(cursor, lookback):
                seen = max(seen, frontier)
                while heap and heap[0][0] < frontier:
                    occ = heapq.heappop(heap)[2]
                    out = self._emit(occ, after, last)
                    if out is not None:
                        if out.skipped is None:
                            last = out.at
                            horizon = out.at + HORIZON
                        yield out
                if frontier > horizon:
                    ended = True
                    break
                for occ in cands:
                    if end is not None and occ.nominal > end:
                        if explain:
                            heapq.heappush(
                                heap, (occ.nominal, next(seq), _skip(occ, AFTER_END, occ.nominal))
                            )
                        ended = True
                        break
                    if start is not None and occ.nominal < start:
                        continue
                    occ = self._filter(occ)
                    if occ.skipped in (OUTSIDE_WINDOW, WEEKDAY_FILTERED, NON_SCHOOL_DAY):
                        streak += 1
                        if streak >= _SKIPS_BEFORE_JUMP:
                            jump = self._jump_target(occ)
                    else:
                        streak = 0
                    heapq.heappush(heap, (occ.at, next(seq), occ))
                    if jump is not None:
                        break
                if ended or jump is not None:
                    break
            else:
                ended = True
            if ended:
                break
            assert jump is not None
            streak = 0
            # Never back over candidates already seen (a DST lookback may reach before midnight).
            cursor = max(jump - timedelta(microseconds=1), seen)
            lookback = False
        while heap:
            occ = heapq.heappop(heap)[2]
            out = self._emit(occ, after, last)
            if out is not None:
                if out.skipped is None:
                    last = out.at
                yield out

    def _before_start(
        self, cursor: datetime, after: datetime, start: datetime
    ) -> Iterator[Occurrence]:
        """The first few candidates that fall before the start, so a preview shows why it waits."""
        shown = 0
        for frontier, cands in self._raw(cursor):
            if frontier >= start or shown >= _BEFORE_START_SHOWN:
                return
            for occ in cands:
                if after < occ.at < start and shown < _BEFORE_START_SHOWN:
                    shown += 1
                    yield _skip(occ, BEFORE_START, occ.at)

    def _emit(self, occ: Occurrence, after: datetime, last: datetime | None) -> Occurrence | None:
        if occ.at <= after:
            return None
        if occ.skipped is None and last is not None and occ.at == last:
            return _skip(occ, DUPLICATE, occ.at) if occ.note else None
        return occ

    def _raw(
        self, cursor: datetime, lookback: bool = True
    ) -> Iterator[tuple[datetime, list[Occurrence]]]:
        """Candidates with an instant after ``cursor``, in batches sharing one wall time, each
        with a frontier no later candidate can precede."""
        rule = self.schedule.rule
        if isinstance(rule, Every):
            anchor = self.schedule.start or _EPOCH
            step = timedelta(seconds=rule.seconds)
            steps = int((cursor - anchor).total_seconds() // rule.seconds) + 1
            found = anchor + steps * step
            while found <= cursor:  # float rounding near a boundary
                found += step
            while True:
                at = found.astimezone(UTC)
                yield at, [Occurrence(at, at, f"every {_words(rule.seconds)}")]
                found += step
        elif isinstance(rule, Once):
            at = rule.at.astimezone(UTC)
            if at > cursor:
                yield at, [Occurrence(at, at, "once")]
        else:
            yield from self._wall(cursor, lookback)

    def _wall(
        self, cursor: datetime, lookback: bool
    ) -> Iterator[tuple[datetime, list[Occurrence]]]:
        tz = self.tzinfo
        begin = cursor
        before = (cursor - _FOLD_LOOKBACK).astimezone(tz).utcoffset()
        if lookback and before != (cursor + _FOLD_LOOKBACK).astimezone(tz).utcoffset():
            begin = cursor - _FOLD_LOOKBACK  # near a DST change: a repeated wall time may follow
        wall_start = begin.astimezone(tz).replace(tzinfo=None)
        streams = [self._stream(src, wall_start) for src in self.sources]
        merged = heapq.merge(*streams, key=lambda item: item[0])
        previous: datetime | None = None
        frontier = begin
        batch: list[Occurrence] = []
        for wall, src in merged:
            if previous is not None and wall != previous:
                yield frontier, batch
                batch = []
            previous = wall
            frontier, occs = self._resolve(wall, src)
            batch.extend(occs)
        if previous is not None:
            yield frontier, batch

    def _stream(self, src: _Source, wall_start: datetime) -> Iterator[tuple[datetime, _Source]]:
        if src.cron is not None:
            for wall in CronSim(src.cron, wall_start.replace(tzinfo=UTC)):
                yield wall.replace(tzinfo=None), src
        else:
            assert src.rrule is not None
            rule = _rebased(src.rrule, wall_start)
            for wall in rule.xafter(wall_start, inc=False):
                yield wall, src

    def _resolve(self, wall: datetime, src: _Source) -> tuple[datetime, list[Occurrence]]:
        """The instants of a local wall time under the DST policy (none, one or two), after the
        earliest instant the wall time can stand for, which never decreases as wall time runs."""
        tz = self.tzinfo
        first = wall.replace(tzinfo=tz, fold=0)
        second = wall.replace(tzinfo=tz, fold=1)
        if first.utcoffset() == second.utcoffset():
            at = first.astimezone(UTC)
            return at, [Occurrence(at, at, src.label)]
        a, b = first.astimezone(UTC), second.astimezone(UTC)
        early, late = min(a, b), max(a, b)
        if a.astimezone(tz).replace(tzinfo=None) != wall:  # in the spring-forward gap
            gap_end = _transition(tz, early, late)
            policy = self.schedule.dst_gap or ("skip" if src.follows_wall_clock else "run")
            missing = f"{wall.isoformat(timespec='seconds')} does not exist (DST gap)"
            if policy == "skip":
                occ = Occurrence(gap_end, gap_end, src.label, DST_GAP_SKIPPED, missing)
                return gap_end, [occ]
            note = f"{missing}: runs at the end of the gap"
            return gap_end, [Occurrence(gap_end, gap_end, src.label, note=note)]
        policy = self.schedule.dst_repeat or ("both" if src.follows_wall_clock else "first")
        if policy == "first":
            return early, [Occurrence(early, early, src.label)]
        if policy == "second":
            return early, [Occurrence(late, late, src.label)]
        return early, [Occurrence(early, early, src.label), Occurrence(late, late, src.label)]

    def _filter(self, occ: Occurrence) -> Occurrence:
        if occ.skipped is not None:
            return occ
        local = occ.nominal.astimezone(self.tzinfo)
        if self.window is not None and not _in_window(local.time(), self.window):
            return _skip(occ, OUTSIDE_WINDOW, occ.at)
        if self.weekdays is not None and local.weekday() not in self.weekdays:
            return _skip(occ, WEEKDAY_FILTERED, occ.at)
        if local.date() in self.non_school_days:
            if self.on_non_school_day != "next_school_day":
                return _skip(occ, NON_SCHOOL_DAY, occ.at)
            moved = self._next_school_day(local)
            if moved is None:
                return _skip(occ, NON_SCHOOL_DAY, occ.at)
            note = f"{MOVED_TO_NEXT_SCHOOL_DAY} from {local.date().isoformat()}"
            return Occurrence(self._jittered(moved, occ), occ.nominal, occ.rule, note=note)
        if self._jitter:
            return Occurrence(self._jittered(occ.at, occ), occ.nominal, occ.rule, note=occ.note)
        return occ

    def _next_school_day(self, local: datetime) -> datetime | None:
        day = local.date()
        for _ in range(366):
            day += timedelta(days=1)
            if day in self.non_school_days:
                continue
            if self.weekdays is not None and day.weekday() not in self.weekdays:
                continue
            wall = datetime.combine(day, local.time().replace(tzinfo=None))
            return self._resolve(wall, _Source("move"))[1][0].at
        return None

    def _jittered(self, at: datetime, occ: Occurrence) -> datetime:
        if not self._jitter:
            return at
        key = f"{self.seed}|{occ.nominal.isoformat()}".encode()
        digest = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
        return at + timedelta(milliseconds=digest % int(self._jitter.total_seconds() * 1000))

    def _jump_target(self, occ: Occurrence) -> datetime:
        """Where the filter that skipped ``occ`` next lets an occurrence through (a lower bound)."""
        local = occ.nominal.astimezone(self.tzinfo)
        if occ.skipped == OUTSIDE_WINDOW and self.window is not None:
            opens = self.window[0]
            day = local.date() if local.time() < opens else local.date() + timedelta(days=1)
            wall = datetime.combine(day, opens)
        else:
            wall = datetime.combine(local.date() + timedelta(days=1), time(0))
        return wall.replace(tzinfo=self.tzinfo, fold=0).astimezone(UTC)


def _skip(occ: Occurrence, reason: str, at: datetime) -> Occurrence:
    return Occurrence(at, occ.nominal, occ.rule, reason, occ.note)


def _in_window(t: time, window: tuple[time, time]) -> bool:
    begin, end = window
    t = t.replace(tzinfo=None)
    if begin <= end:
        return begin <= t <= end
    return t >= begin or t <= end


@lru_cache(maxsize=4096)
def _transition(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] with ``hi``'s UTC offset: where a spring-forward gap ends."""
    target = hi.astimezone(tz).utcoffset()
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


_RRULE_STEP = {
    _rrule.WEEKLY: timedelta(weeks=1),
    _rrule.DAILY: timedelta(days=1),
    _rrule.HOURLY: timedelta(hours=1),
    _rrule.MINUTELY: timedelta(minutes=1),
    _rrule.SECONDLY: timedelta(seconds=1),
}


def _rebased(rule: _rrule.rrule, wall_start: datetime) -> _rrule.rrule:
    """The same rule with DTSTART moved forward by whole intervals, close to ``wall_start``.

    dateutil expands from DTSTART every time; without this an every-minute rule anchored years
    ago would walk millions of occurrences per question. A COUNT needs the real start, and
    monthly or yearly rules are cheap enough to walk, so those are left alone.
    """
    step = _RRULE_STEP.get(rule._freq)
    dtstart = rule._dtstart
    if step is None or rule._count is not None or dtstart >= wall_start:
        return rule
    period = step * rule._interval
    periods = (wall_start - dtstart) // period - 1
    if periods < 1:
        return rule
    return rule.replace(dtstart=dtstart + periods * period)


def compile_schedule(
    schedule: Schedule,
    *,
    non_school_days: Iterable[date] = (),
    on_non_school_day: str | None = None,
    seed: str | None = None,
) -> CompiledSchedule:
    """Validate a schedule and prepare it for evaluation; raises InvalidInput naming the field.

    A schedule that can never run (no runnable occurrence within ``HORIZON`` of its start) is
    refused with the reason. ``seed`` keys the jitter: replicas
    given the same seed compute the same instants (default: the schedule itself).
    """
    tzinfo = zone(schedule.tz)
    if isinstance(schedule.rule, OnDemand):
        _check_on_demand(schedule, on_non_school_day)
    non_school_days = frozenset(non_school_days)
    for name in ("start", "end"):
        value = getattr(schedule, name)
        if value is not None and value.tzinfo is None:
            raise InvalidInput(name, "has no time zone offset", DATETIME_FORM)
    if schedule.start and schedule.end and schedule.end <= schedule.start:
        raise InvalidInput(
            "end",
            f"{schedule.end.isoformat()} is not after start {schedule.start.isoformat()}: "
            "the job could never run",
            "an end later than the start",
        )
    if schedule.dst_gap not in (None, "run", "skip"):
        raise InvalidInput("dst_gap", f"{schedule.dst_gap!r} is not a DST policy", DST_GAP_FORM)
    if schedule.dst_repeat not in (None, "first", "second", "both"):
        raise InvalidInput(
            "dst_repeat", f"{schedule.dst_repeat!r} is not a DST policy", DST_REPEAT_FORM
        )
    on_non_school_day = on_non_school_day or schedule.on_non_school_day
    if on_non_school_day not in ("skip", "next_school_day"):
        raise InvalidInput(
            "on_non_school_day",
            f"{on_non_school_day!r} is not a choice",
            "skip or next_school_day",
        )
    if not 0 <= schedule.jitter_s < 86400:
        raise InvalidInput("jitter", f"{schedule.jitter_s} seconds is out of range", JITTER_FORM)
    window = None
    if schedule.window is not None:
        window = (_time(schedule.window.start, "window"), _time(schedule.window.end, "window"))
        if window[0] == window[1]:
            raise InvalidInput(
                "window", "starts and ends at the same time, so nothing can run", WINDOW_FORM
            )
    weekdays = None
    if schedule.weekdays is not None:
        weekdays = frozenset(WEEKDAYS.index(d) for d in _weekdays(schedule.weekdays, "weekdays"))
    sources = _sources(schedule, tzinfo)
    compiled = CompiledSchedule(
        schedule=schedule,
        tzinfo=tzinfo,
        crons=tuple(s.cron for s in sources if s.cron is not None),
        sources=sources,
        window=window,
        weekdays=weekdays,
        non_school_days=non_school_days,
        on_non_school_day=on_non_school_day,
        seed=seed
        if seed is not None
        else (schedule_encoder.encode(schedule).decode() if schedule.jitter_s else ""),
        _jitter=timedelta(seconds=schedule.jitter_s),
        fast=_plain(schedule, sources, non_school_days),
    )
    _check_possible(compiled)
    return compiled


def _check_on_demand(schedule: Schedule, on_non_school_day: str | None) -> None:
    """Refuse what would filter or bound an on-demand schedule's occurrences: it has none, so
    such a setting would be silently meaningless."""
    given = [
        (name, value)
        for name, value in (
            ("start", schedule.start),
            ("end", schedule.end),
            ("window", schedule.window),
            ("weekdays", schedule.weekdays),
            ("jitter", schedule.jitter_s or None),
            ("dst_gap", schedule.dst_gap),
            ("dst_repeat", schedule.dst_repeat),
            ("calendar", schedule.calendar),
            (
                "on_non_school_day",
                (on_non_school_day or schedule.on_non_school_day) != "skip" or None,
            ),
        )
        if value is not None
    ]
    if given:
        name = given[0][0]
        raise InvalidInput(
            name,
            "does not apply to an on-demand schedule, which has no occurrences of its own "
            "(it runs only when started by hand or after its upstream job)",
            ON_DEMAND_FORM,
        )


def _plain(schedule: Schedule, sources: tuple[_Source, ...], non_school_days: frozenset) -> bool:
    """Whether nothing can be skipped or moved, and cron lines can go to cronsim as they are."""
    if schedule.window or schedule.weekdays or schedule.jitter_s or non_school_days:
        return False
    if schedule.dst_gap or schedule.dst_repeat:
        return False
    return all(s.cron is not None and len(s.cron.split()) == 5 for s in sources)


def _check_possible(compiled: CompiledSchedule) -> None:
    """Refuse a schedule with no runnable occurrence within ``HORIZON`` of its first possible one.

    The search starts from the schedule's own start (or a fixed reference), never from the
    clock, so a schedule accepted once still compiles when the scheduler reloads it later.
    """
    sched = compiled.schedule
    rule = sched.rule
    if isinstance(rule, OnDemand):
        return  # runs only when asked: never "could never run"
    if compiled.fast and sched.end is None and not isinstance(rule, Once):
        return  # nothing filters, nothing ends: cronsim has refused days that never occur
    if isinstance(rule, Once):
        if (sched.start and rule.at < sched.start) or (sched.end and rule.at > sched.end):
            raise InvalidInput(
                "once_at",
                f"{rule.at.isoformat()} is outside the start and end, so the job could never run",
                "a time between start and end",
            )
        reference = rule.at - timedelta(microseconds=1)
    elif sched.start is not None:
        reference = sched.start - timedelta(microseconds=1)
    elif isinstance(rule, RRule):
        reference = _DEFAULT_RRULE_ANCHOR.replace(tzinfo=compiled.tzinfo) - timedelta(
            microseconds=1
        )
    else:
        reference = _REFERENCE
    if compiled.next_runnable(reference)[0] is not None:
        return
    field_name = _to_blame(compiled, reference)
    years = HORIZON.days // 366
    since = f"of its start {sched.start.isoformat()}" if sched.start else "of any start"
    raise InvalidInput(
        field_name,
        f"{describe(sched)} has no occurrence that can run within {years} years {since}, "
        "so the job could never run",
        _possible_form(field_name),
    )


def _to_blame(compiled: CompiledSchedule, reference: datetime) -> str:
    """The field that makes a schedule impossible: a filter the rule alone would pass, else the
    end, else the rule itself."""
    sched = compiled.schedule
    if sched.window and sched.weekdays:
        no_days = dataclasses.replace(compiled, weekdays=None, fast=False)
        return "weekdays" if no_days.next_runnable(reference)[0] is not None else "window"
    if sched.window or sched.weekdays:
        bare = dataclasses.replace(compiled, window=None, weekdays=None, fast=False)
        if bare.next_runnable(reference)[0] is not None:
            return "window" if sched.window else "weekdays"
    return "end" if sched.end is not None else _rule_field(sched.rule)


def _rule_field(rule: Rule) -> str:
    return {
        Every: "every",
        Cron: "cron",
        Daily: "daily_at",
        Weekly: "weekly",
        Monthly: "monthly",
        RRule: "rrule",
        Once: "once_at",
        OnDemand: "on_demand",
    }[type(rule)]


def _possible_form(field_name: str) -> str:
    return {
        "window": f"a window that contains some of the schedule's times ({WINDOW_FORM})",
        "weekdays": f"weekdays on which the schedule has times ({WEEKDAYS_FORM})",
        "end": "an end after the first occurrence",
        "rrule": RRULE_FORM,
        "cron": CRON_FORM,
    }.get(field_name, "a schedule with a future occurrence")


def _time(text: str, field_name: str) -> time:
    match = _HHMM.match(text.strip())
    if not match:
        raise InvalidInput(field_name, f"{text!r} is not a time of day", TIME_FORM)
    return time(int(match[1]), int(match[2]))


def _weekdays(days: list[str] | None, field_name: str) -> list[str]:
    bad = [d for d in days or [] if d not in WEEKDAYS]
    if not days or bad:
        raise InvalidInput(field_name, f"{days!r} is not a list of weekdays", WEEKDAYS_FORM)
    return days


def _at_times(times: list[str], field_name: str) -> list[tuple[int, int]]:
    if not times:
        raise InvalidInput(field_name, "no time given", TIMES_FORM)
    out = []
    for text in times:
        t = _time(text, field_name)
        out.append((t.hour, t.minute))
    return list(dict.fromkeys(out))


def _sources(schedule: Schedule, tzinfo: ZoneInfo) -> tuple[_Source, ...]:
    rule = schedule.rule
    if isinstance(rule, Every):
        if rule.seconds < 1:
            raise InvalidInput(
                "every", f"{rule.seconds} seconds is shorter than one second", EVERY_FORM
            )
        return ()
    if isinstance(rule, Once):
        if rule.at.tzinfo is None:
            raise InvalidInput("once_at", "has no time zone offset", DATETIME_FORM)
        return ()
    if isinstance(rule, OnDemand):
        return ()
    if isinstance(rule, Cron):
        expr = _check_cron(rule.expr)
        fields = expr.split()
        minute, hour = fields[-5], fields[-4]
        wild = minute.startswith("*") or hour.startswith("*")
        return (_Source(f"cron '{expr}'", cron=expr, follows_wall_clock=wild),)
    if isinstance(rule, Daily):
        times = _at_times(rule.times, "daily_at")
        days = _weekdays(rule.weekdays, "weekdays") if rule.weekdays is not None else None
        dow = ",".join(str(_CRON_DOW[d]) for d in days) if days else "*"
        return tuple(_Source(f"daily {h:02d}:{m:02d}", cron=f"{m} {h} * * {dow}") for h, m in times)
    if isinstance(rule, Weekly):
        days = _weekdays(rule.weekdays, "weekly")
        times = _at_times(rule.times, "at")
        dow = ",".join(str(_CRON_DOW[d]) for d in days)
        label = ",".join(days)
        return tuple(
            _Source(f"weekly {label} {h:02d}:{m:02d}", cron=f"{m} {h} * * {dow}") for h, m in times
        )
    if isinstance(rule, Monthly):
        times = _at_times(rule.times, "at")
        dom, dow, label = _monthly_fields(rule)
        return tuple(
            _Source(f"monthly {label} {h:02d}:{m:02d}", cron=f"{m} {h} {dom} * {dow}")
            for h, m in times
        )
    if isinstance(rule, RRule):
        parsed = _parse_rrule(rule.rule, schedule, tzinfo)
        wild = parsed._freq in (_rrule.HOURLY, _rrule.MINUTELY, _rrule.SECONDLY)
        return (
            _Source(f"rrule '{_rrule_text(rule.rule)}'", rrule=parsed, follows_wall_clock=wild),
        )
    raise InvalidInput(
        "schedule",
        f"unknown rule {rule!r}",
        "every, cron, daily, weekly, monthly, rrule, once or on_demand",
    )


def _monthly_fields(rule: Monthly) -> tuple[str, str, str]:
    if rule.day is not None:
        if rule.nth is not None or rule.weekday is not None:
            raise InvalidInput("monthly", "give a day or an nth weekday, not both", MONTHLY_FORM)
        if rule.day == -1:
            return "L", "*", "last day"
        if not 1 <= rule.day <= 31:
            raise InvalidInput("monthly", f"day {rule.day} is not a day of the month", MONTHLY_FORM)
        return str(rule.day), "*", f"day {rule.day}"
    if rule.nth is None or rule.weekday not in WEEKDAYS:
        raise InvalidInput("monthly", "needs a day, or an nth and a weekday", MONTHLY_FORM)
    if rule.nth not in (1, 2, 3, 4, 5, -1):
        raise InvalidInput("monthly", f"{rule.nth} is not an ordinal", MONTHLY_FORM)
    dow = _CRON_DOW[rule.weekday]
    if rule.nth == -1:
        return "*", f"{dow}L", f"last {rule.weekday}"
    ordinal = {v: k for k, v in _ORDINALS.items()}[rule.nth]
    return "*", f"{dow}#{rule.nth}", f"{ordinal} {rule.weekday}"


def _rrule_text(text: str) -> str:
    value = " ".join(text.split())
    return value[6:] if value.upper().startswith("RRULE:") else value


def _parse_rrule(text: str, schedule: Schedule, tzinfo: ZoneInfo) -> _rrule.rrule:
    """One RRULE, read as wall-clock times in the schedule's zone from its start."""
    body = _rrule_text(text)
    if not body or "\n" in text.strip() or "DTSTART" in body.upper():
        raise InvalidInput(
            "rrule", f"{text!r} is not a single RRULE (give DTSTART as the start)", RRULE_FORM
        )
    anchor = (
        schedule.start.astimezone(tzinfo).replace(tzinfo=None)
        if schedule.start
        else _DEFAULT_RRULE_ANCHOR
    )

    def local_until(match: re.Match[str]) -> str:
        raw = match[1]
        fmt = "%Y%m%dT%H%M%S" if "T" in raw.upper() else "%Y%m%d"
        instant = datetime.strptime(raw.upper(), fmt).replace(tzinfo=UTC)
        return "UNTIL=" + instant.astimezone(tzinfo).strftime("%Y%m%dT%H%M%S")

    body = _UNTIL.sub(local_until, body)
    try:
        parsed = _rrule.rrulestr(body, dtstart=anchor)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        reason = str(exc)
        if isinstance(exc, TypeError) and "freq" in reason:
            reason = "FREQ is missing"
        raise InvalidInput(
            "rrule", f"{text!r} is not a valid RRULE: {reason}", RRULE_FORM
        ) from None
    if not isinstance(parsed, _rrule.rrule):
        raise InvalidInput("rrule", f"{text!r} is not a single RRULE", RRULE_FORM)
    return parsed


def _check_cron(expr: str) -> str:
    text = " ".join(expr.split())
    _check_cron_text(text, expr)
    return text


@lru_cache(maxsize=4096)
def _check_cron_text(text: str, expr: str) -> None:
    """Whether cronsim parses ``text`` (the time zone plays no part in that), once per
    expression: a scheduler loading a million jobs compiles thousands of schedules that share
    a few thousand cron expressions in different zones. Refusals are not cached."""
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        reason = str(exc).rstrip(".")
        if "day-of-month" in reason and _valid_without_month(text):
            reason = (
                "that day of the month never occurs in the months given, so the job could never run"
            )
        raise InvalidInput(
            "cron", f"{expr!r} is not a valid cron expression: {reason}", CRON_FORM
        ) from None


def _valid_without_month(text: str) -> bool:
    fields = text.split()
    month = len(fields) - 2
    try:
        CronSim(" ".join([*fields[:month], "*", fields[-1]]), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


def describe(schedule: Schedule) -> str:
    """The schedule in words, as the jobs list shows it."""
    rule = schedule.rule
    if isinstance(rule, OnDemand):
        return ON_DEMAND_TEXT
    tz = f" ({schedule.tz})"
    extras = ""
    if schedule.window is not None:
        extras += f", between {schedule.window.start} and {schedule.window.end}"
    if schedule.weekdays:
        extras += f", only on {', '.join(schedule.weekdays)}"
    if schedule.jitter_s:
        extras += f", jitter up to {_words(schedule.jitter_s)}"
    if schedule.calendar:
        action = (
            "moved to the next school day"
            if schedule.on_non_school_day == "next_school_day"
            else "skipped"
        )
        extras += f", non-school days of {schedule.calendar!r} {action}"
    if isinstance(rule, Every):
        return "every " + _words(rule.seconds) + extras
    if isinstance(rule, Once):
        return "once at " + rule.at.astimezone(zone(schedule.tz)).isoformat() + extras
    if isinstance(rule, Cron):
        return f"cron '{rule.expr}'{tz}{extras}"
    if isinstance(rule, Weekly):
        return f"weekly on {', '.join(rule.weekdays)} at {', '.join(rule.times)}{tz}{extras}"
    if isinstance(rule, Monthly):
        _, _, label = _monthly_fields(rule)
        return f"monthly on the {label} at {', '.join(rule.times)}{tz}{extras}"
    if isinstance(rule, RRule):
        return f"rrule '{_rrule_text(rule.rule)}'{tz}{extras}"
    days = f" on {', '.join(rule.weekdays)}" if rule.weekdays else ""
    return f"daily at {', '.join(rule.times)}{days}{tz}{extras}"


def _words(seconds: int) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "") if n != 1 else unit
    return f"{seconds} seconds" if seconds != 1 else "second"


schedule_encoder = msgspec.json.Encoder()
schedule_decoder = msgspec.json.Decoder(Schedule)
