"""The cyclic garbage collector and a service's long-lived objects.

A full collection walks every tracked object the process holds. After start-up that is mostly
what never becomes garbage: modules, classes, faststream's and OpenTelemetry's machinery, the
settings, a scheduler's loaded jobs. On the hot paths (a worker running thousands of short
runs a second, history storing their events) the allocations made per message set off full
collections every few seconds, and each one walked all of that again: measured in the
notifier-worker during ``e2e_runs_rate``, collections took about a third of its time.

:func:`freeze_long_lived` moves what is alive at that moment into the collector's permanent
generation (:func:`gc.freeze`), which collections skip. Those objects are still freed by
reference counting when dropped; only a reference cycle among them would stay until the
process ends, so it is called where the heap holds what the service keeps, not garbage:
in each service's entry point, once its modules are imported and its app is built, before
the event loop starts (never in a library call: a test process that froze its fixtures
would keep their cycles).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations (less deallocations) between two collections of the youngest generation; the
interpreter's default is 700. A run's or an event's short-lived objects are freed by reference
counting long before that, so far fewer of them are walked, and far fewer of the objects a
batch keeps for a few milliseconds are promoted into the older generations and walked again
there. It bounds the cyclic garbage waiting for a collection to about as many objects."""


def freeze_long_lived() -> None:
    """Collect what start-up left as garbage, let collections skip what is alive now, and
    collect the youngest generation less often (:data:`YOUNG_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
