"""Backfill and catch-up decisions in memory: the range's occurrences as the dispatcher would
have planned them (calendar, window, DST), the bound, what a backfill runs again, the ``ask``
policy's awaiting rows and which occurrences a decision runs. The integration tests prove the
wiring (written once, published once)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from belltower import backfill as bf
from belltower.api import RunPolicy
from belltower.decisions import PendingDecision, check_choice, sentence, split
from belltower.errors import InvalidInput
from belltower.schedule import Daily, Every, Schedule, Window, compile_schedule
from belltower_scheduler.entry import Entry, compiled_for, job_spec
from belltower_scheduler.planner import Planner

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
NOW = datetime(2030, 3, 20, 12, 0, tzinfo=UTC)


def ask_missed(grace_s: float, now: datetime) -> list[tuple[datetime, str, str | None]]:
    """What the planner makes of an every-minute job with catch-up ``ask`` due since T0."""
    spec = job_spec("system.canary", "notifier", 500, None, RunPolicy(catch_up="ask"), None, False)
    entry = Entry("00000000-0000-0000-0000-0000000000a5", "job", b"{}",
                  compiled_for(Schedule(rule=Every(seconds=60))), T0, spec)  # fmt: skip
    out: list = []
    Planner(misfire_grace_s=grace_s).plan(entry, now, out)
    out.sort(key=lambda p: p.scheduled_for)
    assert all("jobs decide" in (p.reason or "") for p in out if p.state == "awaiting")
    return [(p.scheduled_for, p.state, p.cause) for p in out]


def test_a_range_gives_the_schedule_s_own_occurrences_half_open() -> None:
    compiled = compile_schedule(Schedule(rule=Every(seconds=3600)))
    since = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
    found = bf.occurrences_in(compiled, since, since + timedelta(hours=3), 1000)
    assert found == [since, since + timedelta(hours=1), since + timedelta(hours=2)]


def test_a_range_leaves_out_what_the_calendar_and_the_window_skip() -> None:
    schedule = Schedule(
        rule=Every(seconds=3600),
        window=Window(start="09:00", end="11:00"),
        calendar="district",
    )
    compiled = compile_schedule(schedule, non_school_days=[date(2030, 1, 8)])
    found = bf.occurrences_in(
        compiled, datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 1, 10, tzinfo=UTC), 1000
    )
    assert [t.hour for t in found] == [9, 10, 11] * 2
    assert {t.date() for t in found} == {date(2030, 1, 7), date(2030, 1, 9)}  # the 8th is off


def test_a_range_over_a_dst_change_follows_the_local_time() -> None:
    compiled = compile_schedule(Schedule(rule=Daily(times=["07:30"]), tz="America/New_York"))
    found = bf.occurrences_in(
        compiled, datetime(2030, 3, 8, tzinfo=UTC), datetime(2030, 3, 12, tzinfo=UTC), 1000
    )
    # 2030-03-10 is the spring change: 07:30 is 12:30 UTC before it and 11:30 after.
    assert [t.hour for t in found] == [12, 12, 11, 11]


def test_more_occurrences_than_the_bound_are_refused_naming_max_and_the_limit() -> None:
    compiled = compile_schedule(Schedule(rule=Every(seconds=60)))
    with pytest.raises(InvalidInput) as refused:
        bf.occurrences_in(compiled, T0, T0 + timedelta(days=1), bf.DEFAULT_MAX)
    assert refused.value.field == "max"
    assert "more than 1,000" in refused.value.reason
    assert "10,000" in (refused.value.accepted or "")
    assert len(bf.occurrences_in(compiled, T0, T0 + 1000 * MINUTE, 1000)) == 1000


@pytest.mark.parametrize(
    ("since", "until", "limit", "priority", "field"),
    [
        (NOW - timedelta(days=1), NOW - timedelta(days=2), 10, None, "to"),
        (NOW - timedelta(days=1), NOW + timedelta(hours=1), 10, None, "to"),
        (NOW - timedelta(days=1), NOW, 0, None, "max"),
        (NOW - timedelta(days=1), NOW, bf.MAX_LIMIT + 1, None, "max"),
        (NOW - timedelta(days=1), NOW, 10, -1, "priority"),
        (datetime(2030, 3, 1), NOW, 10, None, "from"),
    ],
)
def test_a_backfill_that_cannot_be_meant_is_refused_naming_the_field(
    since: datetime, until: datetime, limit: int, priority: int | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        bf.check(since, until, limit, priority, NOW)
    assert refused.value.field == field


def test_the_ledger_state_decides_what_a_backfill_runs_again() -> None:
    states_by_id = {
        "a": "dispatched", "b": "missed", "c": "coalesced", "d": "pending",
        "e": "awaiting", "f": "lost", "g": "skipped",
    }  # fmt: skip
    got = bf.classify(["a", "b", "c", "d", "e", "f", "g", "h"], states_by_id)
    assert [action for action, _ in got] == [
        "already", "run", "run", "already", "run", "already", "run", "run",
    ]  # fmt: skip
    assert got[-1] == ("run", None)  # never planned at all


def test_catch_up_ask_holds_every_missed_occurrence_awaiting_a_decision() -> None:
    got = ask_missed(10, T0 + 5 * MINUTE + timedelta(seconds=30))
    assert got == [(T0 + i * MINUTE, "awaiting", "catch_up") for i in range(6)]


def test_catch_up_ask_still_runs_the_occurrence_that_is_on_time() -> None:
    got = ask_missed(60, T0 + 3 * MINUTE + timedelta(seconds=5))
    assert [s for _, s, _ in got] == ["awaiting"] * 3 + ["pending"]


def test_a_decision_runs_the_latest_all_or_none() -> None:
    waiting = [(T0 + 2 * MINUTE, "c"), (T0, "a"), (T0 + MINUTE, "b")]
    assert split(waiting, "latest") == (["c"], ["a", "b"])
    assert split(waiting, "all") == (["a", "b", "c"], [])
    assert split(waiting, "none") == ([], ["a", "b", "c"])
    assert split([], "latest") == ([], [])


def test_an_unknown_choice_is_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_choice("some")
    assert refused.value.field == "choice" and "latest" in (refused.value.accepted or "")


def test_the_banner_says_how_many_runs_were_missed_and_when() -> None:
    d = PendingDecision(
        job_id="j", title="Balance Due", count=7, first=T0, last=T0 + 6 * MINUTE, since=T0,
        expires_at=T0 + timedelta(days=1),
    )  # fmt: skip
    assert sentence(d) == (
        "7 runs of 'Balance Due' were missed between 2030-01-07T08:00+00:00 and 2030-01-07T08:06+00:00"
    )


def test_the_cli_refuses_a_bad_backfill_or_decision_before_asking_the_api(monkeypatch) -> None:
    from typer.testing import CliRunner

    from belltower.cli import app

    monkeypatch.setenv("BELLTOWER_API_URL", "http://127.0.0.1:9")  # nothing listens: never asked
    monkeypatch.setenv("BELLTOWER_API_TOKEN", "bt_unused")
    runner = CliRunner()
    job_id = "00000000-0000-0000-0000-0000000000a5"
    cases = [
        (
            [
                "jobs",
                "backfill",
                job_id,
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-02",
                "--max",
                "0",
            ],
            "max:",
        ),
        (["jobs", "backfill", job_id, "--from", "soon", "--to", "2026-01-02"], "from:"),
        (["jobs", "backfill", job_id, "--from", "2026-01-02", "--to", "2026-01-01"], "to:"),
        (["jobs", "decide", job_id, "maybe"], "choice:"),
    ]
    for args, words in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output, (args, result.output)


def test_catch_up_ask_survives_an_export_and_an_import() -> None:
    import msgspec

    from belltower import transfer
    from belltower.api import Job, JobDocument

    now = datetime(2026, 9, 1, 7, 30, tzinfo=UTC)
    stored = Job(
        id="00000000-0000-0000-0000-0000000000a5", title="Balance Due", type="system.canary",
        pool="notifier", params={}, schedule=Schedule(rule=Daily(times=["07:30"])),
        schedule_text="daily", priority=500, paused=False, next_run_at=now,
        keep_history_days=30, timeout_s=None, type_installed=True, created_at=now,
        updated_at=now, catch_up="ask",
    )  # fmt: skip
    for fmt in transfer.FORMATS:
        [doc] = transfer.load(transfer.dump([transfer.document_of(stored)], fmt))
        assert msgspec.convert(doc, JobDocument).catch_up == "ask"
    with pytest.raises(msgspec.ValidationError, match="catch_up"):
        msgspec.convert({**doc, "catch_up": "later"}, JobDocument)
