"""Bulk and delta OneRoster sets from this run's records and the last run's snapshot."""

from __future__ import annotations

from datetime import UTC, datetime

from belltower_integration.oneroster.delta import Snapshot, plan, stamp

EARLIER = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 6, 30, 5, 123456, tzinfo=UTC)


def test_a_bulk_set_sends_every_record_with_blank_status_and_date() -> None:
    planned = plan({"users": {"b": ("x",), "a": ("y",)}}, None, NOW)
    assert planned.rows == {"users": [["a", "", "", "y"], ["b", "", "", "x"]]}
    assert planned.snapshot.files == {"users": {"a": (("y",), NOW), "b": (("x",), NOW)}}
    assert planned.counts["users"] == {"active": 2, "tobedeleted": 0, "unchanged": 0}


def test_a_delta_sends_new_and_changed_as_active_and_gone_as_tobedeleted() -> None:
    base = Snapshot(
        {
            "users": {"kept": (("1",), EARLIER), "changed": (("old",), EARLIER), "gone": (("g",), EARLIER)},
            "orgs": {"o": (("org",), EARLIER)},
        }
    )  # fmt: skip
    current = {
        "users": {"kept": ("1",), "changed": ("new",), "added": ("n",)},
        "orgs": {"o": ("org",)},
    }
    planned = plan(current, base, NOW)
    when = "2026-03-02T06:30:05.123Z"
    assert planned.rows["users"] == [
        ["added", "active", when, "n"],
        ["changed", "active", when, "new"],
        ["gone", "tobedeleted", when, "g"],
    ]
    assert planned.rows["orgs"] == []
    assert planned.snapshot.files["users"] == {
        "kept": (("1",), EARLIER), "changed": (("new",), NOW), "added": (("n",), NOW),
    }  # fmt: skip
    assert planned.counts["users"] == {"active": 2, "tobedeleted": 1, "unchanged": 1}


def test_the_date_last_modified_is_utc_with_milliseconds() -> None:
    assert stamp(datetime(2026, 3, 2, 1, 2, 3, tzinfo=UTC)) == "2026-03-02T01:02:03.000Z"
