"""The school's own nightly work: calculations over the SIS (GPA and class rank, attendance,
detentions, withdrawals, graduation requirements, immunization compliance, invoices)."""

from typing import Any

from belltower.jobtypes import JobType

from . import attendance, discipline, gpa, records, triggers

JOB_TYPES: list[JobType[Any]] = [
    gpa.class_rank_gpa_type,
    gpa.gpa_reset_type,
    attendance.attendance_summary_type,
    attendance.daily_attendance_type,
    discipline.detentions_type,
    discipline.auto_withdraw_type,
    triggers.job_type,
    records.grad_summary_type,
    records.immunization_compliance_type,
    records.outstanding_invoices_type,
]
