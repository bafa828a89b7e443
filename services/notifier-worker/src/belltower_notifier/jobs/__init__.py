"""The job types the notifier pool runs."""

from belltower.jobtypes import Registry

from . import canary

registry = Registry()
registry.register(canary.job_type)

__all__ = ["registry"]
