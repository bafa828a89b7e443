"""The seeds' timed tasks, and which Belltower job type implements each.

Belltower's catalog is built from two product documents: the timed tasks of a higher-education
SIS (Jenzabar SONIS) and the built-in scheduled jobs of a K-12 SIS (Focus). This module lists
their task titles as those documents give them and maps job types onto them, so the console can
say which seed task a job type implements, group the catalog, and ``python -m belltower.seedtasks``
can print the seed-by-seed coverage table (``--markdown`` for the docs).

A job type with no seed task is Belltower's own and is listed in ``OWN``; a test keeps every
registered job type in one or the other.
"""

from __future__ import annotations

import sys
from typing import Literal

import msgspec

Catalog = Literal["SONIS", "Focus"]


class SeedTask(msgspec.Struct, frozen=True, kw_only=True):
    """One timed task of a seed catalog: which catalog, and its title as the catalog gives it."""

    catalog: Catalog
    title: str


SONIS_TASKS: tuple[str, ...] = (
    "Billing Summary",
    "Conclusive Export",
    "Daily Temp Table Cleanup",
    "Nelnet Batch Downloader",
    "Nelnet Batch File Import",
    "Nelnet Current Balance Export",
    "Nelnet eBill File Export",
    "Nelnet Refund Response File Import",
    "Nelnet Refund Response Process Files",
    "Notifier: Activities",
    "Notifier: Address Check",
    "Notifier: Alumni Employment",
    "Notifier: Application Checklist",
    "Notifier: At-Risk Alert",
    "Notifier: Attendance",
    "Notifier: Attendance with Tardies",
    "Notifier: Auto Jotform Import",
    "Notifier: Auto Waitlist Enroll",
    "Notifier: Azure AD SAMAccountName Update",
    "Notifier: Balance Due",
    "Notifier: Batch Folder Cleanup",
    "Notifier: Below Full-Time Status",
    "Notifier: Birthday",
    "Notifier: Blackboard LMS Export",
    "Notifier: Blackboard User Extract",
    "Notifier: Blank Grades",
    "Notifier: Canvas LMS Export",
    "Notifier: Course Audit Notification",
    "Notifier: Credit Balance",
    "Notifier: DMS Notifications",
    "Notifier: Edvance360 Attendance Import",
    "Notifier: Edvance360 LMS Export",
    "Notifier: Element451 Import",
    "Notifier: Enrollment Confirmation",
    "Notifier: Financial Aid Verification",
    "Notifier: Final Grades Not Posted",
    "Notifier: Form Builder Forms Submitted",
    "Notifier: GPA Reset",
    "Notifier: Grades Not Official",
    "Notifier: Immunization Expiration",
    "Notifier: Immunization Expiration by Status",
    "Notifier: Import Names",
    "Notifier: Incomplete Grades",
    "Notifier: JFA Awards",
    "Notifier: JFA User Export",
    "Notifier: LMS Sync Log Pruning",
    "Notifier: Loan Disbursement",
    "Notifier: Mailchimp Sync",
    "Notifier: Minor Status Indicator",
    "Notifier: Moodle Attendance Import",
    "Notifier: Moodle LMS Export",
    "Notifier: Name CSV Export",
    "Notifier: Nelnet Payment Plans Enrollment Import",
    "Notifier: NMTRACK Delete Task",
    "Notifier: No Attendance Record",
    "Notifier: PeopleSoft Export File",
    "Notifier: Prospect Import Notifier",
    "Notifier: Registration Email Reminder",
    "Notifier: SchoolMessenger",
    "Notifier: Schoology Sync Notifier",
    "Notifier: Status Addition",
    "Notifier: Student Schedule Changes",
    "Notifier: Timed Email",
    "Notifier: Timed Email Prospects",
    "Notifier: Transfer Credit Notifier",
    "Notifier: User Defined Hold",
    "Notifier: Withdrawn Notifier",
    "PIN/Password Expiration",
    "PowerFAIDS Export",
    "Purge Saved ISIRs",
    "Reconcile Course Section Seats",
    "Regent Award Disbursement",
    "Schoology Exports",
)

FOCUS_TASKS: tuple[str, ...] = (
    "Acelo Integration",
    "Address Corrections",
    "Alert when existing MTSS students enroll (SSS)",
    "Assign LCPs (AE Schools with FPS)",
    "Attendance Daily Triggers",
    "Attendance Scanner Absences (FPS)",
    "Attendance SMS",
    "Attendance Summary Calculation",
    "Attended Hours (FPS)",
    "Automated Emails",
    "Automatic Application of District Template Fees (FPS)",
    "Automatic Billing Invoices",
    "Automatic Course Requests",
    "Automatic Updates",
    "AutoWithdraw (FPS)",
    "Basic Skills Assessment (FPS)",
    "Benefits Rates Update (ERP)",
    "Calculate Adult Fees (FPS)",
    "Calculate Class Rank and GPA",
    "Class Size Averages (Florida State Reporting)",
    "Communication Email Replies",
    "Communication Queue",
    "Communication Status Update",
    "Create Detentions from Tardies",
    "Create Payment Plan Invoices (ERP)",
    "Create Process Assessments (Florida State Reporting)",
    "CTE Consecutive Absences & CTE Pay Period 2 (FPS)",
    "Daily Maintenance",
    "Database Object Report (ERP)",
    "Deactivate MTSS events for withdrawn students (SSS)",
    "Delete Stale POS Invoices (ERP)",
    "District Assessments Re-scoring (Assessments)",
    "District Assessment Dynamic Scheduling (Assessments)",
    "Document Management (for districts that have the Document Management add-on module)",
    "Ed-Fi Data Sync",
    "Email Notifications",
    "Emergency Services Health Check",
    "EOY Attendance Calculation (Florida State Reporting)",
    "Field Trip Notifications (ERP)",
    "FLEID Export/Import (Florida State Reporting)",
    "Florida ARMS Student Field Tracker (Florida State Reporting)",
    "Florida DOE Extracts and Verification Reports (Florida State Reporting)",
    "Florida Peer Nightly Import (Florida State Reporting)",
    "Florida Test ID Assignment",
    "Focus Chat Alerts",
    "Frontline Leave (ERP)",
    "Generate ERP Extracts (ERP)",
    "Generate PDFs from Receipts",
    "Generate Test Score Report records based on report files",
    "Import Assessment Question Count (Assessments)",
    "Import Assessments",
    "Import ICS File",
    "Import Peer Data (Florida State Reporting)",
    "Load Data From Blackboard API",
    "Master Schedule Snapshots",
    "Medical",
    "MetLife Incoming (ERP)",
    "Missing Class CRON Job",
    "NeoGov New Hires & NeoGov User Data",
    "Nightly Immunization Compliance Job",
    "Online Course Req. Populate Student Field",
    "Outgoing MSIX FASTER Responses",
    "Outstanding Student Invoices",
    "Parse Addresses",
    "PCard Email Reminder (ERP)",
    "Pcard Imports (ERP)",
    "Phone Communication Processing (Phone Communication)",
    "Communication Status Updates",
    "Populate Graduation Requirements Summary",
    "Portal Payments Automatched Cashout",
    "POS Invoice Table Update",
    "Power BI Postsecondary Receipt Report (FPS and Power BI)",
    "Process Assessments (Florida State Reporting)",
    "Process Trial Balance Subscriptions (ERP)",
    "Purge Old Files",
    "Recalc DT Grades Fix",
    "Recalculate Daily Attendance",
    "Recalculate LCPs (FPS Module)",
    "Refresh Choice Data",
    "Regions Bank Import (ERP)",
    "Remove FEFP code from dismissed students (SSS)",
    "Remove Scheduled Students from Waitlist",
    "Retiree Benefits Rates Update (ERP)",
    "Retitle Sections",
    "Rollover",
    "SAP Alert",
    "Set Next School",
    "Set Zoned School",
    "SSS Parent Portal Notifications",
    "Store Automated Cashout",
    "SQL Triggers",
    "Submit DMV Attendance via FTP",
    "Submit LearnFare via FTP",
    "Survey Site Maintenance",
    "Symlink Photos",
    "Synchronize Schedule of Services (SSS)",
    "Sync Recent Course Period Changes",
    "Transfer Blackboard API Data",
    "Update Attended Hours (FPS)",
    "Update Cost Factor From Matrix of Services (SSS)",
    "Update Employee Agreements (ERP)",
    "Update Student Financial Data",
    "Update Teacher Certification",
    "Void Overdue AR Invoices",
    "WDIS Total Hours (FPS)",
)

TASKS: tuple[SeedTask, ...] = tuple(
    [SeedTask(catalog="SONIS", title=t) for t in SONIS_TASKS]
    + [SeedTask(catalog="Focus", title=t) for t in FOCUS_TASKS]
)


def _sonis(title: str) -> SeedTask:
    return SeedTask(catalog="SONIS", title=title)


def _focus(title: str) -> SeedTask:
    return SeedTask(catalog="Focus", title=title)


IMPLEMENTS: dict[str, tuple[SeedTask, ...]] = {
    "people.jotform_import": (_sonis("Notifier: Auto Jotform Import"),),
    "people.element451_import": (_sonis("Notifier: Element451 Import"),),
    "calc.attendance_summary": (_focus("Attendance Summary Calculation"),),
    "calc.attendance_triggers": (_focus("Attendance Daily Triggers"),),
    "calc.auto_withdraw": (_focus("AutoWithdraw (FPS)"),),
    "calc.class_rank_gpa": (_focus("Calculate Class Rank and GPA"),),
    "calc.daily_attendance": (_focus("Recalculate Daily Attendance"),),
    "calc.detentions_from_tardies": (_focus("Create Detentions from Tardies"),),
    "calc.gpa_reset": (_sonis("Notifier: GPA Reset"),),
    "calc.grad_requirements_summary": (_focus("Populate Graduation Requirements Summary"),),
    "calc.immunization_compliance": (_focus("Nightly Immunization Compliance Job"),),
    "calc.outstanding_invoices": (_focus("Outstanding Student Invoices"),),
    "enrollment.automatic_course_requests": (_focus("Automatic Course Requests"),),
    "enrollment.online_course_requirement": (_focus("Online Course Req. Populate Student Field"),),
    "enrollment.refresh_choice_data": (_focus("Refresh Choice Data"),),
    "enrollment.rollover": (_focus("Rollover"),),
    "enrollment.set_next_school": (_focus("Set Next School"),),
    "enrollment.set_zoned_school": (_focus("Set Zoned School"),),
    "notifier.at_risk_alert": (_sonis("Notifier: At-Risk Alert"),),
    "calendar.import_ics": (_focus("Import ICS File"),),
    "exports.azure_ad_account_update": (_sonis("Notifier: Azure AD SAMAccountName Update"),),
    "exports.conclusive": (_sonis("Conclusive Export"),),
    "finance.billing_summary": (_sonis("Billing Summary"),),
    "finance.jfa_user_export": (_sonis("Notifier: JFA User Export"),),
    "finance.nelnet_balance_export": (_sonis("Nelnet Current Balance Export"),),
    "finance.nelnet_batch_download": (_sonis("Nelnet Batch Downloader"),),
    "finance.nelnet_batch_import": (_sonis("Nelnet Batch File Import"),),
    "finance.nelnet_ebill_export": (_sonis("Nelnet eBill File Export"),),
    "finance.nelnet_refund_download": (_sonis("Nelnet Refund Response File Import"),),
    "finance.nelnet_refund_process": (_sonis("Nelnet Refund Response Process Files"),),
    "finance.peoplesoft_export": (_sonis("Notifier: PeopleSoft Export File"),),
    "finance.powerfaids_export": (_sonis("PowerFAIDS Export"),),
    "finance.regent_award_disbursement": (_sonis("Regent Award Disbursement"),),
    "notifier.jfa_awards": (_sonis("Notifier: JFA Awards"),),
    "notifier.nelnet_plan_enrollments": (
        _sonis("Notifier: Nelnet Payment Plans Enrollment Import"),
    ),
    "exports.name_csv": (_sonis("Notifier: Name CSV Export"),),
    "exports.schoolmessenger": (_sonis("Notifier: SchoolMessenger"),),
    "finance.district_template_fees": (
        _focus("Automatic Application of District Template Fees (FPS)"),
    ),
    "finance.automatic_billing_invoices": (_focus("Automatic Billing Invoices"),),
    "finance.calculate_adult_fees": (_focus("Calculate Adult Fees (FPS)"),),
    "finance.delete_stale_pos_invoices": (_focus("Delete Stale POS Invoices (ERP)"),),
    "finance.payment_plan_invoices": (_focus("Create Payment Plan Invoices (ERP)"),),
    "finance.pcard_reminder": (_focus("PCard Email Reminder (ERP)"),),
    "finance.portal_cashout": (_focus("Portal Payments Automatched Cashout"),),
    "finance.pos_invoice_table_update": (_focus("POS Invoice Table Update"),),
    "finance.receipt_pdfs": (_focus("Generate PDFs from Receipts"),),
    "finance.store_cashout": (_focus("Store Automated Cashout"),),
    "finance.student_financial_data": (_focus("Update Student Financial Data"),),
    "finance.void_overdue_ar_invoices": (_focus("Void Overdue AR Invoices"),),
    "files.batch_folder_cleanup": (_sonis("Notifier: Batch Folder Cleanup"),),
    "files.purge_old_files": (_focus("Purge Old Files"),),
    "files.symlink_photos": (_focus("Symlink Photos"),),
    "florida.class_size_averages": (_focus("Class Size Averages (Florida State Reporting)"),),
    "florida.eoy_attendance": (_focus("EOY Attendance Calculation (Florida State Reporting)"),),
    "grades.recalc_dt_grades": (_focus("Recalc DT Grades Fix"),),
    "health.medical": (_focus("Medical"),),
    "housekeeping.address_corrections": (_focus("Address Corrections"),),
    "housekeeping.parse_addresses": (_focus("Parse Addresses"),),
    "housekeeping.reconcile_seats": (_sonis("Reconcile Course Section Seats"),),
    "housekeeping.remove_scheduled_from_waitlist": (
        _focus("Remove Scheduled Students from Waitlist"),
    ),
    "housekeeping.retitle_sections": (_focus("Retitle Sections"),),
    "housekeeping.schedule_snapshot": (_focus("Master Schedule Snapshots"),),
    "housekeeping.temp_table_cleanup": (_sonis("Daily Temp Table Cleanup"),),
    "hr.benefits_rates_update": (_focus("Benefits Rates Update (ERP)"),),
    "hr.retiree_benefits_rates_update": (_focus("Retiree Benefits Rates Update (ERP)"),),
    "hr.update_employee_agreements": (_focus("Update Employee Agreements (ERP)"),),
    "hr.frontline_leave": (_focus("Frontline Leave (ERP)"),),
    "hr.metlife_incoming": (_focus("MetLife Incoming (ERP)"),),
    "hr.neogov_new_hires": (_focus("NeoGov New Hires & NeoGov User Data"),),
    "hr.neogov_user_data": (_focus("NeoGov New Hires & NeoGov User Data"),),
    "lms.canvas_export": (_sonis("Notifier: Canvas LMS Export"),),
    "lms.blackboard_export": (
        _sonis("Notifier: Blackboard LMS Export"),
        _focus("Transfer Blackboard API Data"),
    ),
    "lms.blackboard_load": (_focus("Load Data From Blackboard API"),),
    "lms.blackboard_user_extract": (_sonis("Notifier: Blackboard User Extract"),),
    "rostering.edfi_sync": (_focus("Ed-Fi Data Sync"),),
    "lms.moodle_export": (_sonis("Notifier: Moodle LMS Export"),),
    "lms.moodle_attendance_import": (_sonis("Notifier: Moodle Attendance Import"),),
    "lms.edvance360_attendance_import": (_sonis("Notifier: Edvance360 Attendance Import"),),
    "lms.schoology_export": (_sonis("Schoology Exports"),),
    "lms.schoology_sync_notifier": (_sonis("Notifier: Schoology Sync Notifier"),),
    "lms.sync_log_pruning": (_sonis("Notifier: LMS Sync Log Pruning"),),
    "lms.sync_course_period_changes": (_focus("Sync Recent Course Period Changes"),),
    "notifier.activities": (_sonis("Notifier: Activities"),),
    "notifier.address_check": (_sonis("Notifier: Address Check"),),
    "notifier.alumni_employment": (_sonis("Notifier: Alumni Employment"),),
    "notifier.application_checklist": (_sonis("Notifier: Application Checklist"),),
    "messaging.field_trip_notifications": (_focus("Field Trip Notifications (ERP)"),),
    "messaging.attendance_sms": (_focus("Attendance SMS"),),
    "messaging.automated_emails": (_focus("Automated Emails"),),
    "messaging.mailchimp_sync": (_sonis("Notifier: Mailchimp Sync"),),
    "messaging.communication_queue": (
        _focus("Communication Queue"),
        _focus("Phone Communication Processing (Phone Communication)"),
    ),
    "messaging.communication_status_update": (
        _focus("Communication Status Update"),
        _focus("Communication Status Updates"),
    ),
    "messaging.email_notifications": (_focus("Email Notifications"),),
    "messaging.sss_parent_notifications": (_focus("SSS Parent Portal Notifications"),),
    "notifier.attendance": (_sonis("Notifier: Attendance"),),
    "notifier.attendance_tardies": (_sonis("Notifier: Attendance with Tardies"),),
    "notifier.auto_waitlist_enroll": (_sonis("Notifier: Auto Waitlist Enroll"),),
    "notifier.balance_due": (_sonis("Notifier: Balance Due"),),
    "notifier.below_full_time": (_sonis("Notifier: Below Full-Time Status"),),
    "notifier.birthday": (_sonis("Notifier: Birthday"),),
    "notifier.blank_grades": (_sonis("Notifier: Blank Grades"),),
    "notifier.course_audit": (_sonis("Notifier: Course Audit Notification"),),
    "notifier.credit_balance": (_sonis("Notifier: Credit Balance"),),
    "notifier.dms_notifications": (_sonis("Notifier: DMS Notifications"),),
    "notifier.enrollment_confirmation": (_sonis("Notifier: Enrollment Confirmation"),),
    "notifier.final_grades_not_posted": (_sonis("Notifier: Final Grades Not Posted"),),
    "notifier.financial_aid_verification": (_sonis("Notifier: Financial Aid Verification"),),
    "notifier.forms_submitted": (_sonis("Notifier: Form Builder Forms Submitted"),),
    "notifier.grades_not_official": (_sonis("Notifier: Grades Not Official"),),
    "notifier.immunization_expiration": (_sonis("Notifier: Immunization Expiration"),),
    "notifier.immunization_expiration_by_status": (
        _sonis("Notifier: Immunization Expiration by Status"),
    ),
    "notifier.incomplete_grades": (_sonis("Notifier: Incomplete Grades"),),
    "notifier.loan_disbursement": (_sonis("Notifier: Loan Disbursement"),),
    "notifier.minor_status": (_sonis("Notifier: Minor Status Indicator"),),
    "notifier.nmtrack_delete": (_sonis("Notifier: NMTRACK Delete Task"),),
    "notifier.no_attendance_record": (_sonis("Notifier: No Attendance Record"),),
    "notifier.pin_password_expiration": (_sonis("PIN/Password Expiration"),),
    "notifier.prospect_import": (_sonis("Notifier: Prospect Import Notifier"),),
    "notifier.purge_saved_isirs": (_sonis("Purge Saved ISIRs"),),
    "notifier.registration_reminder": (_sonis("Notifier: Registration Email Reminder"),),
    "notifier.schedule_changes": (_sonis("Notifier: Student Schedule Changes"),),
    "notifier.status_addition": (_sonis("Notifier: Status Addition"),),
    "notifier.timed_email": (_sonis("Notifier: Timed Email"),),
    "notifier.timed_email_prospects": (_sonis("Notifier: Timed Email Prospects"),),
    "notifier.transfer_credit": (_sonis("Notifier: Transfer Credit Notifier"),),
    "notifier.user_defined_hold": (_sonis("Notifier: User Defined Hold"),),
    "notifier.withdrawn": (_sonis("Notifier: Withdrawn Notifier"),),
    "people.import_names": (_sonis("Notifier: Import Names"),),
    "rostering.oneroster_csv_export": (_sonis("Notifier: Edvance360 LMS Export"),),
    "sss.deactivate_mtss_withdrawn": (
        _focus("Deactivate MTSS events for withdrawn students (SSS)"),
    ),
    "sss.mtss_enrollment_alert": (_focus("Alert when existing MTSS students enroll (SSS)"),),
    "sss.remove_fefp_dismissed": (_focus("Remove FEFP code from dismissed students (SSS)"),),
    "staff.update_teacher_certification": (_focus("Update Teacher Certification"),),
    "system.daily_maintenance": (_focus("Daily Maintenance"),),
}
"""Job type name → the seed task(s) it implements."""

OWN: dict[str, str] = {
    "system.canary": "Belltower's own: a no-op run that proves the pipeline end to end.",
    "files.sftp_upload": (
        "Belltower's own: the transport the seeds' exports name (send the file to the partner's "
        "SFTP server) as a job of its own, so any export can be chained to it."
    ),
    "rostering.oneroster_rest_push": (
        "Belltower's own: the OneRoster roster of the CSV export (the seeds' Edvance360 LMS "
        "Export path) pushed to a OneRoster 1.2 REST service instead of written as a zip."
    ),
}
"""Job types that implement no seed task, with why they exist."""

_FLORIDA_FILE = (
    "needs the Florida DOE's record layouts and its state transfer system, which are not "
    "published as an open contract"
)
_ASSESSMENTS = "needs an assessment item bank and test records the reference schema does not hold"
_FPS_WDIS = (
    "needs Florida's adult and workforce (FPS/WDIS) programme tables (test history, functioning "
    "levels, survey hours) the reference schema does not hold"
)

NOT_BUILT: dict[SeedTask, str] = {
    _focus("Acelo Integration"): "no public contract for Acelo's import of financial transactions",
    _focus("Assign LCPs (AE Schools with FPS)"): _FPS_WDIS,
    _focus("Attendance Scanner Absences (FPS)"): (
        "needs an attendance scanner's log-ins, a device feed with no published format"
    ),
    _focus("Attended Hours (FPS)"): _FPS_WDIS,
    _focus("Automatic Updates"): (
        "platform behaviour, not a job: Belltower is upgraded by its Helm chart and images"
    ),
    _focus("Basic Skills Assessment (FPS)"): _FPS_WDIS,
    _focus("Communication Email Replies"): (
        "needs an inbound mailbox (IMAP) and the SIS's in-app inbox, which the schema does not have"
    ),
    _focus("Create Process Assessments (Florida State Reporting)"): _FLORIDA_FILE,
    _focus("CTE Consecutive Absences & CTE Pay Period 2 (FPS)"): _FPS_WDIS,
    _focus("Database Object Report (ERP)"): (
        "needs staff position allocations the reference schema does not hold"
    ),
    _focus("District Assessments Re-scoring (Assessments)"): _ASSESSMENTS,
    _focus("District Assessment Dynamic Scheduling (Assessments)"): _ASSESSMENTS,
    _focus("Document Management (for districts that have the Document Management add-on module)"): (
        "text extraction and redaction of uploaded files is a document service, not a timed job"
    ),
    _focus("Emergency Services Health Check"): (
        "no public contract for InformaCast's lockdown and assistance checks"
    ),
    _focus("FLEID Export/Import (Florida State Reporting)"): _FLORIDA_FILE,
    _focus("Florida ARMS Student Field Tracker (Florida State Reporting)"): _FLORIDA_FILE,
    _focus(
        "Florida DOE Extracts and Verification Reports (Florida State Reporting)"
    ): _FLORIDA_FILE,
    _focus("Florida Peer Nightly Import (Florida State Reporting)"): _FLORIDA_FILE,
    _focus("Florida Test ID Assignment"): _ASSESSMENTS,
    _focus("Focus Chat Alerts"): "needs the SIS's chat, which the reference schema does not have",
    _focus("Generate ERP Extracts (ERP)"): (
        "five partner extracts (Smart Procure, vendor, ledger, accounts, journal) with no published "
        "layout, and a general ledger the schema does not hold"
    ),
    _focus("Generate Test Score Report records based on report files"): _ASSESSMENTS,
    _focus("Import Assessment Question Count (Assessments)"): (
        "needs Certica's item bank, whose API is not public"
    ),
    _focus("Import Assessments"): _ASSESSMENTS,
    _focus("Import Peer Data (Florida State Reporting)"): _FLORIDA_FILE,
    _focus("Missing Class CRON Job"): (
        "platform behaviour, not a job: a job whose type no worker has installed is refused when "
        "saved, and its runs fail naming the missing type"
    ),
    _focus("Outgoing MSIX FASTER Responses"): (
        "MSIX (the federal migrant student exchange) is open to state agencies only; its FASTER "
        "format is not public"
    ),
    _focus("Pcard Imports (ERP)"): (
        "each bank's purchasing-card feed has its own format, none published as an open contract"
    ),
    _focus("Power BI Postsecondary Receipt Report (FPS and Power BI)"): (
        "needs the ERP's receipt allocations by fiscal year, which the schema does not hold"
    ),
    _focus("Process Assessments (Florida State Reporting)"): _FLORIDA_FILE,
    _focus("Process Trial Balance Subscriptions (ERP)"): (
        "needs a general ledger with closed periods, which the schema does not hold"
    ),
    _focus("Recalculate LCPs (FPS Module)"): _FPS_WDIS,
    _focus(
        "Regions Bank Import (ERP)"
    ): "no public contract for Regions Bank's card transaction file",
    _focus("SAP Alert"): (
        "depends on the Student Academic Report's calculations, which the seed does not describe"
    ),
    _focus("SQL Triggers"): (
        "platform behaviour, not a job: rules that run SQL on a timer would let an editor run any "
        "statement; Belltower's jobs are typed instead"
    ),
    _focus("Submit DMV Attendance via FTP"): _FLORIDA_FILE,
    _focus("Submit LearnFare via FTP"): "no public contract for LearnFare's attendance file",
    _focus("Survey Site Maintenance"): (
        "platform behaviour, not a job: it copies the SIS's own two-factor settings between its sites"
    ),
    _focus("Synchronize Schedule of Services (SSS)"): (
        "needs the ESE Schedule of Services forms, which the reference schema does not hold"
    ),
    _focus("Update Attended Hours (FPS)"): _FPS_WDIS,
    _focus("Update Cost Factor From Matrix of Services (SSS)"): (
        "needs the IEP Matrix of Services forms, which the reference schema does not hold"
    ),
    _focus("WDIS Total Hours (FPS)"): _FPS_WDIS,
}
"""Seed tasks no job type implements, with why not."""

FAMILIES: dict[str, str] = {
    "notifier": "Notifiers",
    "calc": "Calculations",
    "rostering": "Rostering and LMS",
    "lms": "Rostering and LMS",
    "exports": "Exports",
    "enrollment": "School operations",
    "health": "School operations",
    "staff": "School operations",
    "sss": "School operations",
    "grades": "School operations",
    "florida": "State reporting",
    "people": "Imports",
    "calendar": "Imports",
    "hr": "Human resources",
    "finance": "Billing and financial aid",
    "messaging": "Messaging",
    "files": "Files and transfers",
    "housekeeping": "Housekeeping",
    "system": "System",
}
"""The catalog's families, by the first part of a job type's dotted name."""


def family_of(job_type: str) -> str:
    """The family a job type is listed under: by the first part of its name."""
    prefix = job_type.partition(".")[0]
    return FAMILIES.get(prefix, prefix.replace("_", " ").capitalize())


def seed_of(job_type: str) -> tuple[SeedTask, ...]:
    """The seed task(s) a job type implements; empty for Belltower's own."""
    return IMPLEMENTS.get(job_type, ())


def coverage() -> list[tuple[SeedTask, list[str]]]:
    """Every seed task with the job types that implement it (an empty list: not built)."""
    by_task: dict[SeedTask, list[str]] = {task: [] for task in TASKS}
    for name, tasks in sorted(IMPLEMENTS.items()):
        for task in tasks:
            by_task.setdefault(task, []).append(name)
    return list(by_task.items())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rows = coverage()
    done = sum(1 for _, names in rows if names)
    if "--markdown" in args:
        print("| catalog | seed task | job type(s) |")
        print("|---|---|---|")
        for task, names in rows:
            types = ", ".join(f"`{n}`" for n in names) or f"not built: {NOT_BUILT[task]}"
            print(f"| {task.catalog} | {task.title} | {types} |")
    else:
        width = max(len(task.title) for task, _ in rows)
        for task, names in rows:
            print(f"{task.catalog:<6} {task.title:<{width}}  {', '.join(names) or '-'}")
    print(f"\n{done} of {len(rows)} seed tasks have a job type.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
