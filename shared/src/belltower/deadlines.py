"""One timer for every run's timeout."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math


class Deadline:
    """One run's deadline; ``expired`` once it passed while the run was still going."""

    __slots__ = ("cancelling", "done", "expired", "task", "when")

    def __init__(self, when: float, task: asyncio.Task[object]) -> None:
        self.when = when
        self.task = task
        self.cancelling = task.cancelling()
        self.done = False
        self.expired = False

    def timed_out(self) -> bool:
        """Whether the ``CancelledError`` being handled is this deadline's (as ``asyncio.timeout``
        tells its own cancellation from another: the flag and ``uncancel``)."""
        return self.expired and self.task.uncancel() <= self.cancelling


class Deadlines:
    """Cancels each run's task when its deadline passes, with one timer for all of them.

    ``asyncio.timeout`` arms and cancels a timer per run, a few percent of a short run's CPU.
    Here deadlines wait in a heap and one timer is armed for the earliest; when it fires,
    every run past its deadline is cancelled. Runs that ended leave their entry behind until
    the heap is more than half such entries, then it is rebuilt from the live ones.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._live = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def start(self, timeout: float) -> Deadline:
        """The deadline of the current task's run, ``timeout`` seconds from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(loop.time() + timeout, task)
        heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
        self._live += 1
        if deadline.when < self._timer_at:
            self._arm(loop, deadline.when)
        return deadline

    def finish(self, deadline: Deadline) -> None:
        """The run ended (it must be called before the task's next suspension)."""
        if deadline.done:
            return
        deadline.done = True
        self._live -= 1
        if len(self._heap) > 1024 and len(self._heap) > 2 * self._live:
            self._heap = [entry for entry in self._heap if not entry[2].done]
            heapq.heapify(self._heap)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire, loop)
        self._timer_at = when

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = loop.time()
        heap = self._heap
        while heap and (heap[0][2].done or heap[0][0] <= now):
            _, _, deadline = heapq.heappop(heap)
            if not deadline.done:
                deadline.done = True
                deadline.expired = True
                self._live -= 1
                deadline.task.cancel()
        if heap:
            self._arm(loop, heap[0][0])
