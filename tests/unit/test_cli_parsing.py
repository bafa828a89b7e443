"""The CLI refuses bad flags before anything is sent, naming the flag."""

import pytest
from typer.testing import CliRunner

from belltower.cli import app
from belltower.cli.parse import parse_keep, parse_params
from belltower.errors import InvalidInput
from belltower.schedule import (
    Cron,
    Daily,
    Every,
    Monthly,
    Once,
    RRule,
    ScheduleFlags,
    Weekly,
    Window,
)


def test_build_schedule_for_each_kind() -> None:
    assert isinstance(ScheduleFlags(every="30s").build().rule, Every)
    assert isinstance(ScheduleFlags(cron="*/5 * * * *").build().rule, Cron)
    daily = ScheduleFlags(daily_at="07:30,12:00", weekdays="mon,fri", tz="Europe/Paris").build()
    assert (
        daily.rule == Daily(times=["07:30", "12:00"], weekdays=["mon", "fri"])
        and daily.tz == "Europe/Paris"
    )
    once = ScheduleFlags(once_at="2030-09-01T07:30", tz="America/Chicago").build()
    assert isinstance(once.rule, Once) and once.rule.at.utcoffset() is not None


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({}, "schedule"),
        ({"every": "5s", "cron": "* * * * *"}, "schedule"),
        ({"every": "5s", "weekdays": "mon,funday"}, "weekdays"),
        ({"every": "5s", "tz": "Nowhere/Land"}, "tz"),
        ({"daily_at": "25:00"}, "daily_at"),
        ({"every": "5s", "start": "2030-01-02", "end": "2030-01-01"}, "end"),
    ],
)
def test_build_schedule_refuses(flags: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ScheduleFlags(**flags).build()
    assert err.value.field == field


def test_params_and_retention_forms() -> None:
    assert parse_params(["days=7", "note=a=b"]) == {"days": "7", "note": "a=b"}
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_params(["days"])
    assert parse_keep("forever") is None
    assert parse_keep("week") == 7
    assert parse_keep("90") == 90
    with pytest.raises(InvalidInput, match="keep_history"):
        parse_keep("0")


UNREACHABLE = {"BELLTOWER_API_URL": "http://127.0.0.1:1", "BELLTOWER_API_TOKEN": "bt_x"}


def test_bad_cron_exits_2_without_contacting_anything() -> None:
    result = CliRunner().invoke(
        app,
        ["jobs", "create", "--type", "system.canary", "--title", "x", "--cron", "61 * * * *"],
        env=UNREACHABLE,
    )
    assert result.exit_code == 2
    assert "cron" in result.output and "Bad minute" in result.output


def test_an_unreachable_api_exits_3_with_advice() -> None:
    result = CliRunner().invoke(app, ["jobs", "list"], env=UNREACHABLE)
    assert result.exit_code == 3
    assert "did not answer" in result.output and "BELLTOWER_API_URL" in result.output


def test_no_api_configured_exits_5_saying_what_to_set(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .dev/ of a running `make dev` here
    env = {"BELLTOWER_API_URL": "", "BELLTOWER_API_TOKEN": "", "BELLTOWER_PROFILE": ""}
    env["BELLTOWER_PROFILES"] = str(tmp_path / "none.toml")
    result = CliRunner().invoke(app, ["jobs", "list"], env=env)
    assert result.exit_code == 5
    assert (
        "no Belltower API is configured" in result.output and "BELLTOWER_API_TOKEN" in result.output
    )
    named = CliRunner().invoke(app, ["jobs", "list", "--profile", "district"], env=env)
    assert named.exit_code == 5 and "profile 'district'" in named.output


def test_a_url_without_a_token_is_refused_before_anything_is_sent() -> None:
    result = CliRunner().invoke(
        app,
        ["jobs", "list"],
        env={"BELLTOWER_API_URL": "http://127.0.0.1:1", "BELLTOWER_API_TOKEN": ""},
    )
    assert result.exit_code == 5
    assert "no API token" in result.output and "create-token" in result.output


def test_profiles_file_default_named_and_the_dev_stack_profile(tmp_path, monkeypatch) -> None:
    from belltower.cli.remote import find_profile

    monkeypatch.chdir(tmp_path)
    for name in ("BELLTOWER_API_URL", "BELLTOWER_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    profiles = tmp_path / "profiles.toml"
    monkeypatch.setenv("BELLTOWER_PROFILES", str(profiles))
    (tmp_path / ".dev").mkdir()
    (tmp_path / ".dev" / "cli-profile.toml").write_text(
        '[default]\nurl = "http://127.0.0.1:8080/"\ntoken = "bt_dev"\n'
    )
    assert (find_profile().url, find_profile().token) == ("http://127.0.0.1:8080", "bt_dev")
    profiles.write_text(
        '[default]\nurl = "https://bt.school.edu"\ntoken = "bt_a"\n'
        '[district]\nurl = "https://bt.district.org"\ntoken = "bt_b"\n'
    )
    assert (find_profile().url, find_profile().token) == ("https://bt.school.edu", "bt_a")
    assert find_profile("district").token == "bt_b"
    monkeypatch.setenv("BELLTOWER_API_TOKEN", "bt_env")
    assert find_profile("district").token == "bt_env"
    monkeypatch.setenv("BELLTOWER_API_URL", "https://other.example")
    env_only = find_profile("district")
    assert (env_only.url, env_only.token) == ("https://other.example", "bt_env")


def test_schedule_preview_lists_occurrences_in_the_schedule_zone() -> None:
    result = CliRunner().invoke(
        app,
        ["schedule", "preview", "--daily-at", "02:30", "--tz", "America/New_York",
         "--from", "2026-03-06T12:00", "--count", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "  2026-03-07T02:30:00-05:00  Sat",
        # the spring-forward gap: once, at its end
        "  2026-03-08T03:00:00-04:00  Sun  (2026-03-08T02:30:00 does not exist (DST gap): runs at the end of the gap)",
        "  2026-03-09T02:30:00-04:00  Mon",
    ]


def test_schedule_preview_json_and_a_schedule_that_ends() -> None:
    import json

    result = CliRunner().invoke(
        app,
        ["schedule", "preview", "--once-at", "2031-05-04T07:00", "--tz", "Europe/Paris", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "at": "2031-05-04T07:00:00+02:00",
            "utc": "2031-05-04T05:00:00+00:00",
            "rule": "once",
            "skipped": False,
            "reason": None,
        }
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--every", "5s", "--count", "0"], "count:"),
        (["--every", "5s", "--from", "soon"], "from:"),
        (["--cron", "0 0 30 2 *"], "never occurs"),
    ],
)
def test_schedule_preview_refuses_bad_input(args: list[str], words: str) -> None:
    result = CliRunner().invoke(app, ["schedule", "preview", *args])
    assert result.exit_code == 2
    assert words in result.output


def test_build_schedule_new_kinds_and_options() -> None:
    weekly = ScheduleFlags(tz="Europe/London", weekly="fri,mon", at="07:30").build()
    assert weekly.rule == Weekly(weekdays=["mon", "fri"], times=["07:30"])
    monthly = ScheduleFlags(monthly="last-fri", at="06:00,18:00").build()
    assert monthly.rule == Monthly(times=["06:00", "18:00"], nth=-1, weekday="fri")
    filtered = ScheduleFlags(
        every="15m",
        weekdays="mon,tue",
        window="22:00-02:00",
        jitter="90s",
        dst_gap="skip",
        dst_repeat="both",
    ).build()
    assert filtered.weekdays == ["mon", "tue"] and filtered.window == Window("22:00", "02:00")
    assert (filtered.jitter_s, filtered.dst_gap, filtered.dst_repeat) == (90, "skip", "both")
    rrule = ScheduleFlags(rrule="FREQ=HOURLY").build()
    assert rrule.rule == RRule(rule="FREQ=HOURLY")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"weekly": "mon"}, "at"),
        ({"weekly": "mon", "at": "7"}, "at"),
        ({"weekly": "someday", "at": "07:00"}, "weekly"),
        ({"monthly": "99", "at": "07:00"}, "monthly"),
        ({"rrule": "FREQ=SOMETIMES"}, "rrule"),
        ({"rrule": "FREQ=DAILY", "window": "9-5"}, "window"),
        ({"rrule": "FREQ=DAILY", "jitter": "soon"}, "jitter"),
        ({"rrule": "FREQ=DAILY", "dst_gap": "later"}, "dst_gap"),
        ({"rrule": "FREQ=DAILY", "dst_repeat": "never"}, "dst_repeat"),
        ({"rrule": "FREQ=DAILY", "at": "07:00"}, "at"),
        ({"weekly": "sat", "at": "07:00", "window": "08:00-17:00"}, "window"),
    ],
)
def test_build_schedule_refuses_new_flags(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ScheduleFlags(**kwargs).build()
    assert err.value.field == field


def test_schedule_preview_shows_skips_and_their_reasons() -> None:
    import json

    args = ["schedule", "preview", "--cron", "0 */6 * * *", "--window", "05:00-13:00",
            "--tz", "America/New_York", "--from", "2026-03-07T20:00", "--count", "2"]  # fmt: skip
    text = CliRunner().invoke(app, args)
    assert text.exit_code == 0, text.output
    assert text.output.splitlines()[1:] == [
        "  2026-03-08T00:00:00-05:00  Sun  skipped: outside window",
        "  2026-03-08T06:00:00-04:00  Sun",
        "  2026-03-08T12:00:00-04:00  Sun",
    ]
    out = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert [(o["at"], o["reason"], o["rule"]) for o in out] == [
        ("2026-03-08T00:00:00-05:00", "outside window", "cron '0 */6 * * *'"),
        ("2026-03-08T06:00:00-04:00", None, "cron '0 */6 * * *'"),
        ("2026-03-08T12:00:00-04:00", None, "cron '0 */6 * * *'"),
    ]
    assert [o["skipped"] for o in out] == [True, False, False]


def test_schedule_preview_dst_gap_skip_flag() -> None:
    result = CliRunner().invoke(
        app,
        ["schedule", "preview", "--weekly", "sun", "--at", "02:30", "--dst-gap", "skip",
         "--tz", "America/New_York", "--from", "2026-03-01T12:00", "--count", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "  2026-03-08T03:00:00-04:00  Sun  skipped: DST gap skipped  (2026-03-08T02:30:00 does not exist (DST gap))",
        "  2026-03-15T02:30:00-04:00  Sun",
    ]


def test_impossible_schedule_is_refused_by_the_cli_with_why() -> None:
    result = CliRunner().invoke(
        app, ["schedule", "preview", "--daily-at", "03:00", "--window", "07:00-17:00"]
    )
    assert result.exit_code == 2
    assert "window:" in result.output and "could never run" in result.output
