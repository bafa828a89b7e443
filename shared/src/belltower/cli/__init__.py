"""``belltower``: define jobs and watch them run, from a shell.

Talks to the console's HTTP API with an API token (``BELLTOWER_API_URL``, ``BELLTOWER_API_TOKEN``
or a profile, see ``remote``), so every change is the token's user's and in the audit log. One
module per command group (``jobs``, ``why``, ``catchup`` for backfill and decide,
``export_import``, ``runs``, ``preview``, ``calendars``, ``job_types``), over the shared
``options``, ``output`` and ``remote``; ``app`` gathers them.
"""

from .app import app, main

__all__ = ["app", "main"]
