"""Concurrency keys as a job saves them: templates over the params, the job type's default, the
limit that goes with a key, and what the CLI and the console form make of their fields."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from belltower.api import FieldError, JobTypeInfo, LedgerEntry, RunPolicy
from belltower.cli.jobstate import limit_fields
from belltower.cli.why import _why_rows
from belltower.errors import InvalidInput
from belltower_console.forms import concurrency_fields as form_limit_fields
from belltower_console.forms import values_of
from belltower_scheduler.limits import KEY_MAX, checked, key_of, render_key

pytestmark = pytest.mark.unit

SFTP = JobTypeInfo(
    name="files.sftp_upload", pool="integration", title="SFTP Upload", description="",
    params_schema={}, concurrency_key="sftp:{host}", concurrency_limit=2,
)  # fmt: skip


def test_a_template_takes_the_params_values() -> None:
    assert render_key("canvas:{base_url}", {"base_url": "https://a.instructure.com"}) == (
        "canvas:https://a.instructure.com"
    )
    assert render_key("{host}:{port}/{tls}", {"host": "h", "port": 22, "tls": True}) == "h:22/true"
    assert render_key("relay:smtp.district.org", {}) == "relay:smtp.district.org"


@pytest.mark.parametrize(
    ("template", "params", "says"),
    [
        ("sftp:{host}", {}, "{host} names no parameter with a value"),
        ("sftp:{host}", {"host": ""}, "names no parameter"),
        ("x:{hosts}", {"hosts": ["a"]}, "a list or object cannot be a key"),
        ("x:{host.__class__}", {"host": "a"}, "is not a parameter placeholder"),
        ("x:{host!r}", {"host": "a"}, "is not a parameter placeholder"),
        ("x:{host:>9}", {"host": "a"}, "is not a parameter placeholder"),
        ("x:{0}", {}, "is not a parameter placeholder"),
        ("x:{host", {"host": "a"}, "cannot be read"),
        ("x:{host}", {"host": "a\nb"}, "control character"),
        ("x" * (KEY_MAX + 1), {}, "renders to"),
    ],
)
def test_a_template_that_cannot_give_a_key_is_refused(
    template: str, params: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidInput, match="concurrency_key") as err:
        render_key(template, params)
    assert says in str(err.value)


def test_the_job_types_key_applies_unless_the_job_has_its_own_or_none() -> None:
    params = {"host": "sftp.state.edu"}
    taken = checked(RunPolicy(), SFTP, params)
    assert taken is not None and (taken.concurrency_key, taken.concurrency_limit) == (
        "sftp:{host}",
        2,
    )
    assert key_of(taken, msgspec.json.encode(params)) == ("sftp:sftp.state.edu", 2)
    own = checked(RunPolicy(concurrency_key="sftp:shared", concurrency_limit=1), SFTP, params)
    assert own is not None and key_of(own, b"{}") == ("sftp:shared", 1)
    raised = checked(RunPolicy(concurrency_limit=4), SFTP, params)
    assert raised is not None and key_of(raised, msgspec.json.encode(params)) == (
        "sftp:sftp.state.edu",
        4,
    )
    none = checked(RunPolicy(concurrency_key=""), SFTP, params)
    assert none is not None and key_of(none, msgspec.json.encode(params)) is None
    with pytest.raises(InvalidInput, match="host"):
        checked(RunPolicy(), SFTP, {})  # the type's key needs the parameter it names


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (RunPolicy(concurrency_key="k"), "concurrency_limit"),
        (RunPolicy(concurrency_key="k", concurrency_limit=0), "concurrency_limit"),
        (RunPolicy(concurrency_key="k", concurrency_limit=1001), "concurrency_limit"),
        (RunPolicy(concurrency_limit=2), "concurrency_limit"),
    ],
)
def test_a_limit_goes_with_a_key_and_is_bounded(policy: RunPolicy, field: str) -> None:
    keyless = msgspec.structs.replace(SFTP, concurrency_key=None, concurrency_limit=None)
    with pytest.raises(InvalidInput) as err:
        checked(policy, keyless, {"host": "h"})
    assert err.value.field == field


def test_a_job_without_a_key_has_none() -> None:
    assert key_of(RunPolicy(), b'{"host": "h"}') is None


def test_the_cli_and_the_form_clear_the_limit_with_the_key() -> None:
    assert limit_fields("sftp:{host}", 2) == {
        "concurrency_key": "sftp:{host}",
        "concurrency_limit": 2,
    }
    assert limit_fields("", None) == {"concurrency_key": "", "concurrency_limit": None}
    assert limit_fields(None, None) == {}
    with pytest.raises(InvalidInput):
        limit_fields("", 3)
    errors: list[FieldError] = []
    assert form_limit_fields({"concurrency_key": "", "concurrency_limit": "4"}, errors) == {
        "concurrency_key": "",
        "concurrency_limit": None,
    }
    assert form_limit_fields({"concurrency_key": "k", "concurrency_limit": "x"}, errors) == {
        "concurrency_key": "k",
        "concurrency_limit": None,
    }
    assert [e.field for e in errors] == ["concurrency_limit"]
    assert form_limit_fields({}, errors) == {}


def test_the_form_starts_from_the_job_types_key_and_shows_a_jobs_own() -> None:
    fresh = values_of(None, SFTP)
    assert (fresh["concurrency_key"], fresh["concurrency_limit"]) == ("sftp:{host}", "2")
    keyless = msgspec.structs.replace(SFTP, concurrency_key=None, concurrency_limit=None)
    assert values_of(None, keyless)["concurrency_key"] == ""


def test_jobs_why_says_what_an_occurrence_waited_for() -> None:
    at = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
    waited = "waited 312.4s for canvas:https://d.instructure.com (concurrency limit 1)"
    entries = [
        LedgerEntry(
            occurrence_id="o2", run_id="r2", scheduled_for=at, trigger="schedule",
            state="waiting", cause="concurrency",
            reason="waiting: canvas:https://d.instructure.com had 1 of 1 runs in flight",
        ),
        LedgerEntry(
            occurrence_id="o1", run_id="r1", scheduled_for=at, trigger="schedule",
            state="dispatched", cause="concurrency", reason=waited, run_status="succeeded",
            dispatched_at=at,
        ),
    ]  # fmt: skip
    rows = _why_rows(entries)
    assert rows[0][2] == "waiting: canvas:https://d.instructure.com had 1 of 1 runs in flight"
    assert f"ran: succeeded; {waited}; run r1" in rows[1][2]
