"""The job types the integration pool runs."""

from belltower.jobtypes import Registry

from ..calculations import JOB_TYPES as CALCULATIONS
from ..erp import JOB_TYPES as ERP_FINANCE
from ..finance import JOB_TYPES as FINANCE
from . import (
    addresses,
    attendance_sms,
    automated_emails,
    azure_ad,
    batch_folder_cleanup,
    blackboard,
    blackboard_extract,
    canvas_export,
    communication_queue,
    contact_updates,
    daily_maintenance,
    edfi_sync,
    edvance360_attendance,
    element451_import,
    family_email,
    florida,
    frontline_leave,
    housekeeping,
    import_ics,
    import_names,
    jotform_import,
    mailchimp_sync,
    metlife,
    moodle_attendance,
    moodle_export,
    name_csv_export,
    neogov,
    oneroster_export,
    oneroster_rest,
    retitle_sections,
    schedule_upkeep,
    school_data,
    school_records,
    school_year,
    schoolmessenger,
    schoology,
    sftp_upload,
    sss,
    symlink_photos,
)

registry = Registry()
registry.register(daily_maintenance.job_type)
registry.register(batch_folder_cleanup.job_type)
registry.register(sftp_upload.job_type)
registry.register(canvas_export.job_type)
registry.register(oneroster_export.job_type)
registry.register(oneroster_rest.job_type)
registry.register(moodle_export.job_type)
registry.register(moodle_attendance.job_type)
registry.register(edvance360_attendance.job_type)
registry.register(blackboard.export_type)
registry.register(blackboard.load_type)
registry.register(blackboard_extract.job_type)
registry.register(edfi_sync.job_type)
registry.register(mailchimp_sync.job_type)
registry.register(azure_ad.job_type)
registry.register(schoology.export_type)
registry.register(schoology.sync_notifier_type)
registry.register(schoology.course_periods_type)
registry.register(schoology.prune_type)
registry.register(name_csv_export.job_type)
registry.register(schoolmessenger.job_type)
registry.register(frontline_leave.job_type)
registry.register(neogov.new_hires_type)
registry.register(neogov.user_data_type)
registry.register(metlife.job_type)
registry.register(import_names.job_type)
registry.register(jotform_import.job_type)
registry.register(element451_import.job_type)
registry.register(import_ics.job_type)
registry.register(housekeeping.temp_table_cleanup_type)
registry.register(housekeeping.reconcile_seats_type)
registry.register(housekeeping.purge_old_files_type)
registry.register(communication_queue.job_type)
registry.register(contact_updates.job_type)
registry.register(addresses.address_corrections_type)
registry.register(addresses.parse_addresses_type)
registry.register(schedule_upkeep.remove_scheduled_type)
registry.register(schedule_upkeep.schedule_snapshot_type)
registry.register(retitle_sections.job_type)
registry.register(attendance_sms.job_type)
registry.register(automated_emails.job_type)
registry.register(family_email.email_notifications_type)
registry.register(family_email.sss_parent_type)
registry.register(school_records.medical_type)
registry.register(symlink_photos.job_type)
registry.register(school_records.certification_type)
registry.register(florida.class_size_type)
registry.register(school_data.recalc_type)
registry.register(school_data.choice_type)
registry.register(florida.eoy_attendance_type)
for school_job in [*school_year.JOB_TYPES, *sss.JOB_TYPES]:
    registry.register(school_job)
for calculation in CALCULATIONS:
    registry.register(calculation)
for finance_job in (*FINANCE, *ERP_FINANCE):
    registry.register(finance_job)

__all__ = ["registry"]
