"""Entry point of the integration worker: the integration pool's job types, and the OneRoster
provider's reads (``integration.oneroster.read``) for the console."""

from belltower import worker

from .jobs import registry
from .oneroster.provider import RosterProvider


def main() -> None:
    worker.run("integration", registry, answers=RosterProvider)
