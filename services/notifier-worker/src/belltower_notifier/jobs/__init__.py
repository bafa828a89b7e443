"""The job types the notifier pool runs: the canary and the seeds' notifiers."""

from belltower.jobtypes import Registry

from ..notifiers import NOTIFIERS
from . import canary

registry = Registry()
registry.register(canary.job_type)
for notifier in NOTIFIERS:
    registry.register(notifier.job_type())

__all__ = ["registry"]
