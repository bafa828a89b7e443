"""``belltower``: define jobs and watch them run, from a shell.

Talks to the scheduler and history over NATS request-reply (``BELLTOWER_NATS_URL``). One module
per command group (``jobs``, ``why``, ``export_import``, ``runs``, ``preview``, ``calendars``,
``job_types``), over the shared ``options``, ``output`` and ``remote``; ``app`` gathers them.
"""

from .app import app, main

__all__ = ["app", "main"]
