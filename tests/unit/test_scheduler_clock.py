"""The scheduler's test-only clock seam: an offset read from a file, again whenever it changes."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from belltower.events import utcnow
from belltower_scheduler.clock import OffsetClock, scheduler_clock


def test_without_a_file_the_clock_is_utcnow() -> None:
    assert scheduler_clock(None) is utcnow


def test_the_offset_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    clock = scheduler_clock(path)
    assert isinstance(clock, OffsetClock)
    assert abs(clock() - utcnow()) < timedelta(seconds=5), "no file: no offset"
    path.write_text("3600")
    assert clock() - utcnow() > timedelta(minutes=59)
    path.write_text("-3600")
    os.utime(path, ns=(1, 1))  # a change the same nanosecond would be missed; force a new stamp
    assert utcnow() - clock() > timedelta(minutes=59)
    path.write_text("not a number")
    assert abs(clock() - utcnow()) < timedelta(seconds=5), "unreadable: no offset"
