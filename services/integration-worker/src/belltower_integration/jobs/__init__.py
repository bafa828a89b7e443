"""The job types the integration pool runs."""

from belltower.jobtypes import Registry

from . import batch_folder_cleanup, daily_maintenance

registry = Registry()
registry.register(daily_maintenance.job_type)
registry.register(batch_folder_cleanup.job_type)

__all__ = ["registry"]
