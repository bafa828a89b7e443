"""Run timeouts with one timer: a run past its deadline is cancelled as asyncio.timeout would."""

from __future__ import annotations

import asyncio

import pytest

from belltower.deadlines import Deadlines

pytestmark = pytest.mark.unit


async def run(deadlines: Deadlines, timeout: float, work: float) -> str:
    deadline = deadlines.start(timeout)
    try:
        await asyncio.sleep(work)
    except asyncio.CancelledError:
        if deadline.timed_out():
            return "timed out"
        raise
    finally:
        deadlines.finish(deadline)
    return "done"


async def test_only_the_runs_past_their_deadline_are_timed_out() -> None:
    deadlines = Deadlines()
    results = await asyncio.gather(
        run(deadlines, 0.05, 1.0), run(deadlines, 1.0, 0.0), run(deadlines, 0.02, 1.0)
    )
    assert results == ["timed out", "done", "timed out"]


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(run(deadlines, 5.0, 5.0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_finished_runs_do_not_pile_up() -> None:
    deadlines = Deadlines()
    for _ in range(5000):
        assert await run(deadlines, 3600.0, 0.0) == "done"
    assert len(deadlines._heap) <= 1025
