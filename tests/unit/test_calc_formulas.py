"""The calculation jobs' arithmetic, with values worked out by hand."""

from decimal import Decimal as D

import pytest

from belltower.errors import InvalidInput
from belltower.sis.formulas import (
    Graded,
    competition_ranks,
    daily_status,
    gpa,
    nth_consecutive,
    percentile,
    risk_score,
    thresholds_met,
)
from belltower_integration.calculations import JOB_TYPES as CALCULATIONS
from belltower_scheduler.catalog import validate_params


def test_gpa_weights_by_credits_and_never_weights_an_f() -> None:
    # A (4) x 3 credits, B (3) x 4 credits with an AP weight of 1, F x 2 credits with weight 1.
    got = gpa(
        [
            Graded(D(3), D(4)),
            Graded(D(4), D(3), D(1)),
            Graded(D(2), D(0), D(1), earns_credit=False),
        ]
    )
    assert (got.attempted, got.earned, got.gpa_credits) == (D(9), D(7), D(9))
    assert got.unweighted == D("2.667")  # (12 + 12 + 0) / 9 = 2.6666...
    assert got.weighted == D("3.111")  # (12 + 16 + 0) / 9 = 3.1111...


def test_grades_without_points_count_credits_but_no_gpa() -> None:
    passed = gpa([Graded(D(3), None)])  # a P
    assert (passed.attempted, passed.earned, passed.unweighted, passed.weighted) == (
        D(3),
        D(3),
        None,
        None,
    )


def test_gpa_rounds_half_up() -> None:
    # (3.7 x 1 + 3.3 x 1) / 2 = 3.5 exactly; (4 + 3.7 + 3.3 + 3.0 + 2.7 + 2.3 + 2.0 + 1.7) / 8 = 2.8375
    grades = ["4", "3.7", "3.3", "3.0", "2.7", "2.3", "2.0", "1.7"]
    assert gpa([Graded(D(1), D(g)) for g in grades]).unweighted == D("2.838")


def test_competition_ranking_is_1224() -> None:
    ranks = competition_ranks(
        {"a": D("3.9"), "b": D("3.5"), "c": D("3.5"), "d": D("3.1"), "e": None}
    )
    assert ranks == {"a": 1, "b": 2, "c": 2, "d": 4}
    assert competition_ranks({"x": D(2), "y": D(2), "z": D(2)}) == {"x": 1, "y": 1, "z": 1}
    assert [percentile(r, 4) for r in (1, 2, 4)] == [D("100.00"), D("75.00"), D("25.00")]


@pytest.mark.parametrize(
    ("marks", "kwargs", "status"),
    [
        (["present", "absent", "absent"], {}, "absent"),  # 2 of 3 missed
        (["present", "present", "absent"], {}, "present"),  # 1 of 3 < 50%
        (["present", "absent"], {}, "absent"),  # 50% reaches the threshold
        (["excused", "absent"], {}, "excused"),  # excused at least as many
        (["excused", "absent", "absent"], {}, "absent"),
        (["tardy", "tardy", "present"], {}, "present"),
        (["tardy", "tardy", "present"], {"tardy_is_present": False}, "absent"),
        (["present", "absent"], {"absent_percent": 75}, "present"),
        (["absent"] * 3 + ["present"], {"absent_percent": 75}, "absent"),
    ],
)
def test_daily_status(marks: list[str], kwargs: dict, status: str) -> None:
    assert daily_status(marks, **kwargs).status == status


def test_consecutive_absences_and_thresholds() -> None:
    seq = [(1, "absent"), (2, "absent"), (3, "tardy"), (4, "absent"), (5, "absent"), (6, "absent")]
    assert nth_consecutive(seq, 3) == 6
    assert nth_consecutive(seq, 2) == 2
    assert nth_consecutive(seq, 4) is None
    assert thresholds_met(7, [9, 3, 6]) == [3, 6]
    assert thresholds_met(2, [3]) == []


def test_risk_score() -> None:
    assert risk_score(D(1), D("0.5"), 1) == D("40.0")  # 10 + 20 + 10
    assert risk_score(None, None, 0) == D("100.0")
    assert risk_score(D("4.3"), D(1), 3) == D("80.0")  # grades capped at 40, holds at 0


# Saving a job validates its parameters against the job type's schema (the scheduler's check).

CALC_TYPES = {t.name: t.info() for t in CALCULATIONS}


def test_every_calculation_takes_dry_run_and_names_its_seed() -> None:
    assert len(CALC_TYPES) == 10  # and At-Risk Alert, a notifier
    for name, info in CALC_TYPES.items():
        assert validate_params(info, {"dry_run": "yes"}) == {"dry_run": True}, name
        assert "seed 00" in info.description, name


@pytest.mark.parametrize(
    ("job_type", "params", "field"),
    [
        ("calc.daily_attendance", {"absent_percent": 0}, "param.absent_percent"),
        ("calc.daily_attendance", {"days_back": 10_000}, "param.days_back"),
        ("calc.detentions_from_tardies", {"thresholds": [0]}, "param.thresholds"),
        ("calc.detentions_from_tardies", {"thresholds": []}, "param.thresholds"),
        ("calc.auto_withdraw", {"consecutive_absences": 1}, "param.consecutive_absences"),
        ("calc.class_rank_gpa", {"rank_by": "best"}, "param.rank_by"),
        ("calc.class_rank_gpa", {"divisions": ["../etc"]}, "param.divisions"),
        ("calc.attendance_triggers", {"send_to": "everyone"}, "param.send_to"),
        ("calc.attendance_triggers", {"subject": "{{ ''.__class__ }}"}, "param.subject"),
        ("calc.outstanding_invoices", {"min_balance": -1}, "param.min_balance"),
    ],
)
def test_bad_parameters_are_refused_when_the_job_is_saved(
    job_type: str, params: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_params(CALC_TYPES[job_type], params)
    assert (err.value.field or "").startswith(field)
