"""The scheduler's notion of now, with a test-only seam to move it.

Everything the scheduler plans reads one clock (``Dispatcher.clock``, ``Partitions.clock``).
In production it is :func:`belltower.events.utcnow`. For the fault matrix's wall-clock jump
(``tests/e2e/test_fault_matrix.py``), ``BELLTOWER_SCHEDULER_CLOCK_OFFSET_FILE`` names a file
holding a number of seconds added to now; the file is read again whenever it changes, so a test
steps the clock of a running scheduler as NTP or an operator would step the host's. Test-only:
never set it in a deployment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from belltower.events import utcnow

log = logging.getLogger(__name__)


class OffsetClock:
    """``utcnow()`` plus the offset the file holds (0 while it is missing or unreadable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: int | None = None
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            self._read()
        return utcnow() + self.offset

    def _read(self) -> None:
        try:
            seconds = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            seconds = 0.0
        self.offset = timedelta(seconds=seconds)
        log.warning(
            "the scheduler's clock is offset by a test seam",
            extra={"action": "clock.offset", "offset_s": seconds},
        )


def scheduler_clock(offset_file: Path | None) -> Callable[[], datetime]:
    return utcnow if offset_file is None else OffsetClock(offset_file)
