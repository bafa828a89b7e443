"""Non-school days as people type them and as iCalendar files hold them."""

from datetime import date

import pytest

from belltower.calendars import days_from_ics, parse_days
from belltower.errors import InvalidInput


def test_days_and_ranges() -> None:
    assert parse_days(["2026-12-24", "2026-12-30..2027-01-01,2026-12-24"]) == [
        date(2026, 12, 24),
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 1),
    ]


@pytest.mark.parametrize(
    ("items", "words"),
    [(["24/12/2026"], "not a date"), (["2027-01-02..2027-01-01"], "ends before"), ([""], "no day")],
)
def test_bad_days_are_refused(items: list[str], words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_days(items)
    assert err.value.field == "days" and words in err.value.message


def ics(*events: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\nUID:{i}\r\n{e}END:VEVENT\r\n" for i, e in enumerate(events))
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{body}END:VCALENDAR\r\n".encode()


def test_ics_events_of_each_shape() -> None:
    data = ics(
        "SUMMARY:Spring break\r\nDTSTART;VALUE=DATE:20270322\r\nDTEND;VALUE=DATE:20270327\r\n",
        "SUMMARY:Teacher day\r\nDTSTART;VALUE=DATE:20270215\r\n",
        "SUMMARY:Late start\r\nDTSTART:20270301T220000Z\r\nDURATION:PT4H\r\n",
        "SUMMARY:Labor Day\r\nDTSTART;VALUE=DATE:20200907\r\nRRULE:FREQ=YEARLY;BYMONTH=9;BYDAY=1MO\r\n",
    )
    got = dict(days_from_ics(data, since=date(2026, 9, 1), horizon_days=400))
    assert [d for d, label in got.items() if label == "Spring break"] == [
        date(2027, 3, d) for d in range(22, 27)
    ]
    assert got[date(2027, 2, 15)] == "Teacher day"
    assert got[date(2027, 3, 1)] == got[date(2027, 3, 2)] == "Late start"  # 22:00 to 02:00
    assert [d for d, label in got.items() if label == "Labor Day"] == [
        date(2026, 9, 7),
        date(2027, 9, 6),
    ]


def test_not_an_ics_file_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        days_from_ics(b"hello", since=date(2026, 1, 1))
    assert err.value.field == "ics"
    with pytest.raises(InvalidInput, match="no events"):
        days_from_ics(ics(), since=date(2026, 1, 1))


def test_a_file_that_would_expand_into_millions_of_days_is_refused() -> None:
    """The console reads uploaded files: a rule finer than daily, or one event lasting decades,
    is refused before it is expanded."""

    def ics(event: str) -> bytes:
        return (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:x@t\r\n"
            f"SUMMARY:Flood\r\n{event}END:VEVENT\r\nEND:VCALENDAR\r\n"
        ).encode()

    with pytest.raises(InvalidInput, match="repeats secondly"):
        days_from_ics(
            ics("DTSTART:20260101T000000Z\r\nRRULE:FREQ=SECONDLY\r\n"), since=date(2026, 1, 1)
        )
    with pytest.raises(InvalidInput, match="lasts more than 5000 days"):
        days_from_ics(
            ics("DTSTART;VALUE=DATE:20260101\r\nDTEND;VALUE=DATE:20600101\r\n"),
            since=date(2026, 1, 1),
        )
    daily = ics("DTSTART;VALUE=DATE:20260101\r\nRRULE:FREQ=DAILY;COUNT=3\r\n")
    assert [d for d, _ in days_from_ics(daily, since=date(2026, 1, 1))] == [
        date(2026, 1, 1),
        date(2026, 1, 2),
        date(2026, 1, 3),
    ]
