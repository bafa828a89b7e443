"""Entry point of the notifier worker."""

from belltower import worker

from .jobs import registry


def main() -> None:
    worker.run("notifier", registry)
