"""The job types the integration pool runs."""

from belltower.jobtypes import Registry

from . import batch_folder_cleanup, daily_maintenance, sftp_upload

registry = Registry()
registry.register(daily_maintenance.job_type)
registry.register(batch_folder_cleanup.job_type)
registry.register(sftp_upload.job_type)

__all__ = ["registry"]
