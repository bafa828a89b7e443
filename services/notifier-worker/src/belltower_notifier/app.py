"""Entry point of the notifier worker."""

import asyncio

from belltower import worker
from belltower.db import migrate

from .jobs import registry

STATE_SCHEMA = "notifier"


def main() -> None:
    notifier_worker = worker.Worker("notifier", registry)
    app = notifier_worker.app()

    async def migrate_state() -> None:
        """The notifiers' own state (watermarks, sent ledger, deliveries) lives in schema ``notifier``."""
        await migrate(await notifier_worker.db.pool(), STATE_SCHEMA, "belltower_notifier")

    app.on_startup(migrate_state)
    asyncio.run(app.run())
