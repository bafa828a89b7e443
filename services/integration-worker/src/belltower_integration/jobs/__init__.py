"""The job types the integration pool runs."""

from belltower.jobtypes import Registry

from . import (
    batch_folder_cleanup,
    canvas_export,
    daily_maintenance,
    name_csv_export,
    schoolmessenger,
    sftp_upload,
)

registry = Registry()
registry.register(daily_maintenance.job_type)
registry.register(batch_folder_cleanup.job_type)
registry.register(sftp_upload.job_type)
registry.register(canvas_export.job_type)
registry.register(name_csv_export.job_type)
registry.register(schoolmessenger.job_type)

__all__ = ["registry"]
