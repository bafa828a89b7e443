"""The evaluation of a compiled schedule: its occurrences in order, runnable or skipped with
the reason, under the daylight-saving policy, window, weekday and school-day filters and jitter."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import count as counter
from zoneinfo import ZoneInfo

from cronsim import CronSim
from dateutil import rrule as _rrule

from . import spread
from .describe import _words, describe
from .model import (
    AFTER_END,
    BEFORE_START,
    DST_GAP_SKIPPED,
    DUPLICATE,
    HORIZON,
    MOVED_TO_NEXT_SCHOOL_DAY,
    NON_SCHOOL_DAY,
    OUTSIDE_WINDOW,
    WEEKDAY_FILTERED,
    Every,
    Occurrence,
    Once,
    OnDemand,
    Schedule,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FOLD_LOOKBACK = timedelta(hours=3)
_SKIPS_BEFORE_JUMP = 16
_BEFORE_START_SHOWN = 3


@dataclass(frozen=True, slots=True)
class _Source:
    """One wall-clock generator: cron expressions or an RRULE, with its DST defaults."""

    label: str
    cron: str | None = None
    rrule: _rrule.rrule | None = None
    follows_wall_clock: bool = False


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
    spread_key: str = ""
    """The job id the ``H`` fields were resolved with ("" when the schedule has none)."""
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
        """The schedule in words; with ``H`` fields, the values this job got follow."""
        text = describe(self.schedule)
        if self.spread_key or spread.is_spread(self.schedule):
            picked = ", ".join(s.label for s in self.sources)
            text += (
                f" [H picked: {picked}]" if self.spread_key else " [H: picked from the job's id]"
            )
        return text

    # -- the engine ----------------------------------------------------------------------

    def occurrences(self, after: datetime, *, explain: bool = False) -> Iterator[Occurrence]:  # noqa: C901  (the engine's hot loop: a branch per skip cause, no call per instant)
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
