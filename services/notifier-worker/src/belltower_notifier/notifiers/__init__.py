"""The seeds' notifiers, each declared on the one mechanism in ``belltower_notifier.notify``.

Titles and descriptions come from the Timed Task Scheduler seed; every selection is SQL over the
reference SIS schema (docs/sis-schema.md). Rows about a student are limited by the student's
division, campus, department and level; rows about a section by the section's division and
campus and its course's department and level.
"""

from __future__ import annotations

from typing import Any

from ..notify import Notifier
from .accounts import balance_due, credit_balance
from .at_risk import at_risk_alert
from .attendance import attendance, attendance_tardies, no_attendance_record
from .enrollment import (
    below_full_time,
    enrollment_confirmation,
    registration_reminder,
    schedule_changes,
    withdrawn,
)
from .finance import jfa_awards, nelnet_plan_enrollments
from .grades import blank_grades, final_grades_not_posted, grades_not_official, incomplete_grades
from .holds_health import immunization_expiration, user_defined_hold
from .offices import (
    activities,
    alumni_employment,
    application_checklist,
    course_audit,
    dms_notifications,
    financial_aid_verification,
    forms_submitted,
    immunization_by_status,
    loan_disbursement,
)
from .people import birthday, minor_status, status_addition, transfer_credit
from .timed_email import timed_email, timed_email_prospects
from .upkeep import (
    address_check,
    nmtrack_delete,
    pin_password_expiration,
    prospect_import,
    purge_saved_isirs,
)
from .waitlist import auto_waitlist_enroll

NOTIFIERS: tuple[Notifier[Any], ...] = (
    at_risk_alert, attendance, attendance_tardies, auto_waitlist_enroll, balance_due, below_full_time, birthday,
    blank_grades, credit_balance, enrollment_confirmation, final_grades_not_posted,
    grades_not_official, immunization_expiration, incomplete_grades, minor_status,
    no_attendance_record, registration_reminder, status_addition, schedule_changes,
    transfer_credit, user_defined_hold, withdrawn, timed_email,
    immunization_by_status, course_audit, address_check, application_checklist, activities,
    dms_notifications, forms_submitted, pin_password_expiration, loan_disbursement,
    alumni_employment, timed_email_prospects, financial_aid_verification, purge_saved_isirs,
    nmtrack_delete, prospect_import, nelnet_plan_enrollments, jfa_awards,
)  # fmt: skip

__all__ = ["NOTIFIERS"]
