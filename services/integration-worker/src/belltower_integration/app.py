"""Entry point of the integration worker."""

from belltower import worker

from .jobs import registry


def main() -> None:
    worker.run("integration", registry)
