"""The calculation jobs' arithmetic, with no database: GPAs, class ranks, daily attendance,
consecutive absences, tardy thresholds, the at-risk score. Unit-tested with hand-worked values."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

GPA_PLACES = Decimal("0.001")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Graded:
    """One graded course: its credits, the letter's points (None: not in a GPA), the course's
    weight (added to the points in a weighted GPA, never to a zero) and whether it earns credit."""

    credits: Decimal
    points: Decimal | None
    weight: Decimal = ZERO
    earns_credit: bool = True


@dataclass(frozen=True, slots=True)
class Gpa:
    attempted: Decimal
    earned: Decimal
    gpa_credits: Decimal
    unweighted: Decimal | None
    weighted: Decimal | None


def gpa(courses: Iterable[Graded]) -> Gpa:
    """Credit-weighted grade point averages, rounded half up to three places.

    Attempted credits are every course's; earned, those whose grade earns credit; GPA credits,
    those whose grade has points. The weighted GPA adds each course's weight to its points
    when the points are above zero (an F stays 0). No GPA credits: no GPA (None), not 0.
    """
    attempted = earned = gpa_credits = plain = weighted = ZERO
    for c in courses:
        attempted += c.credits
        if c.earns_credit:
            earned += c.credits
        if c.points is None:
            continue
        gpa_credits += c.credits
        plain += c.points * c.credits
        bonus = c.weight if c.points > 0 else ZERO
        weighted += (c.points + bonus) * c.credits
    if gpa_credits == 0:
        return Gpa(attempted, earned, gpa_credits, None, None)
    return Gpa(
        attempted,
        earned,
        gpa_credits,
        (plain / gpa_credits).quantize(GPA_PLACES, ROUND_HALF_UP),
        (weighted / gpa_credits).quantize(GPA_PLACES, ROUND_HALF_UP),
    )


def competition_ranks(values: Mapping[K, Decimal | None]) -> dict[K, int]:
    """Standard competition ranking ("1224"), highest value first: equal values share the best
    rank and the ranks after them skip as many places. Keys without a value are not ranked."""
    ordered = sorted(((v, k) for k, v in values.items() if v is not None), key=lambda t: -t[0])
    ranks: dict[K, int] = {}
    previous: Decimal | None = None
    rank = 0
    for place, (value, key) in enumerate(ordered, 1):
        if value != previous:
            rank, previous = place, value
        ranks[key] = rank
    return ranks


def percentile(rank: int, size: int) -> Decimal:
    """Share of the class at or below this rank, in percent: rank 1 of 4 is 100.00, 4 of 4 25.00."""
    return (Decimal(size - rank + 1) * 100 / size).quantize(Decimal("0.01"), ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Day:
    periods: int
    present: int
    tardy: int
    absent: int
    excused: int
    status: str


def daily_status(
    marks: Sequence[str], *, absent_percent: int = 50, tardy_is_present: bool = True
) -> Day:
    """A student's day from the day's class marks (present, tardy, absent, excused).

    The day is missed when the share of periods missed (absent or excused, and tardy when
    ``tardy_is_present`` is false) reaches ``absent_percent``; a missed day is excused when at
    least as many of its missed periods were excused as unexcused, else absent.
    """
    if not marks:
        raise ValueError("a day needs at least one mark")
    present = marks.count("present")
    tardy = marks.count("tardy")
    absent = marks.count("absent")
    excused = marks.count("excused")
    unexcused = absent + (0 if tardy_is_present else tardy)
    missed = unexcused + excused
    status = "present"
    if missed * 100 >= absent_percent * len(marks) and missed > 0:
        status = "excused" if excused >= unexcused else "absent"
    return Day(len(marks), present, tardy, absent, excused, status)


def nth_consecutive(marks: Sequence[tuple[K, str]], n: int, mark: str = "absent") -> K | None:
    """The key (e.g. the date) of the n-th mark of the first run of ``n`` consecutive ``mark``
    marks, in the order given; None when no run is that long."""
    run = 0
    for key, m in marks:
        run = run + 1 if m == mark else 0
        if run == n:
            return key
    return None


def thresholds_met(count: int, thresholds: Iterable[int]) -> list[int]:
    """The thresholds a count has reached, smallest first (3 tardies with [3, 6]: [3])."""
    return sorted({t for t in thresholds if count >= t})


def risk_score(
    gpa_value: Decimal | None,
    attended_share: Decimal | None,
    active_holds: int,
    *,
    max_points: Decimal = Decimal(4),
) -> Decimal:
    """The at-risk (retention) score, 0 to 100: higher is safer.

    40 points from grades (the cumulative GPA's share of ``max_points``), 40 from attendance
    (the share of the term's marked meetings attended), 20 less 10 per active hold (not below
    0). A student with no GPA yet or no marks yet gets that part in full: no evidence of risk.
    """
    share = Decimal(1) if gpa_value is None else min(gpa_value / max_points, Decimal(1))
    grades = Decimal(40) * share
    attendance = Decimal(40) if attended_share is None else Decimal(40) * attended_share
    holds = Decimal(max(0, 20 - 10 * active_holds))
    return (grades + attendance + holds).quantize(Decimal("0.1"), ROUND_HALF_UP)
