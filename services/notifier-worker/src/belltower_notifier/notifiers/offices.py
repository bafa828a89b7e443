"""The offices' notifiers: admissions (application checklist, activities, documents, forms),
the registrar (course audits), financial aid (loans, ISIR verification), alumni employment and
immunizations for every status."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import msgspec

from belltower import sis
from belltower.errors import InvalidInput

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import (
    FACULTY,
    NAME,
    SECTION,
    SECTION_COLUMNS,
    STUDENT_COLUMNS,
    Channel,
    LookBack,
    Meta,
    NotifyFaculty,
    NotifyStudents,
    Statuses,
    rows_of,
)  # fmt: skip
from .holds_health import ImmunizationParams, immunization_expiration

Code = Annotated[str, Meta(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_-]+$")]
AnyStatus = Annotated[Statuses, Meta(description="module statuses to include; empty: all")]


async def _known(q: Query[Any], field: str, codes: list[str], sql: str) -> list[str]:
    """``codes`` upper-cased, refusing any the SIS does not have (naming those it has)."""
    wanted = [c.upper() for c in codes]
    if wanted:
        known = {r[0] for r in await q.conn.fetch(sql)}
        if unknown := sorted(set(wanted) - known):
            raise InvalidInput(
                f"param.{field}", f"unknown codes: {', '.join(unknown)}",
                ", ".join(sorted(known)) or "(none defined)",
            )  # fmt: skip
    return wanted


# -- Immunization Expiration by Status --------------------------------------------------------


class ImmunizationByStatusParams(ImmunizationParams, kw_only=True, forbid_unknown_fields=True):
    statuses: Statuses = msgspec.field(default_factory=lambda: list(sis.PERSON_STATUSES))


immunization_by_status = replace(
    immunization_expiration,
    name="notifier.immunization_expiration_by_status",
    title="Notifier: Immunization Expiration by Status",
    description=(
        "The Immunization Expiration by Status notifier will automatically notify users once when "
        "their immunizations are near expiration. Unlike the standard Immunization Expiration, "
        "which applies solely to students, it applies to all statuses (or the statuses chosen)."
    ),
    params=ImmunizationByStatusParams,
)

# -- Course Audit Notification ----------------------------------------------------------------


class CourseAuditParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"
    notify_faculty: NotifyFaculty = False
    faculty_channel: Channel = "email"
    first_run_look_back_days: LookBack = 1


async def _course_audit(q: Query[CourseAuditParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, e.id AS enrollment_id, s.id AS section_id, {SECTION},
               t.code AS term, e.registered_at, s.lead_faculty_id, {FACULTY}
          FROM sis.enrollments e
          JOIN sis.people p ON p.id = e.person_id
          JOIN sis.sections s ON s.id = e.section_id
          JOIN sis.courses c ON c.id = s.course_id
          JOIN sis.terms t ON t.id = s.term_id
         WHERE e.status = 'audit' AND e.registered_at > $1 AND e.registered_at <= $2 AND {q.where(args)}
         ORDER BY e.registered_at, name"""
    return await rows_of(
        q, sql, args, lambda v: f"audit:{v['enrollment_id']}", faculty="lead_faculty_id"
    )


course_audit = Notifier(
    name="notifier.course_audit",
    title="Notifier: Course Audit Notification",
    description=(
        "The Course Audit Notification sends out an automated alert to select users when a "
        "student registers to audit a course: every audit registration since the last run, "
        "optionally to the section's lead faculty member too."
    ),
    params=CourseAuditParams,
    select=_course_audit,
    columns=(
        *STUDENT_COLUMNS,
        *SECTION_COLUMNS,
        ("term", "Term"),
        ("faculty", "Faculty"),
        ("registered_at", "Registered"),
    ),
    subject="{{ count | counted('audit registration') }} since the last run",
    intro="These students registered to audit a course:",
    faculty_intro="These students registered to audit your sections:",
    repeat="since_last_run",
)

# -- Application Checklist --------------------------------------------------------------------


class ChecklistParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADMISSIONS"
    statuses: Statuses = msgspec.field(default_factory=lambda: ["prospect", "student"])
    first_run_look_back_days: LookBack = 1


async def _checklist(q: Query[ChecklistParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, p.status, i.id AS item_id, i.item, i.required, i.received_at,
               (SELECT count(*) FROM sis.application_checklist_items o
                 WHERE o.person_id = i.person_id AND o.required AND o.received_at IS NULL)::int AS outstanding
          FROM sis.application_checklist_items i JOIN sis.people p ON p.id = i.person_id
         WHERE i.received_at > $1 AND i.received_at <= $2 AND {q.where(args)}
         ORDER BY name, i.item"""
    return await rows_of(q, sql, args, lambda v: f"checklist:{v['item_id']}")


application_checklist = Notifier(
    name="notifier.application_checklist",
    title="Notifier: Application Checklist",
    description=(
        "The Application Checklist notification alerts the members of the selected group when new "
        "application checklist items have been received. It will create a notification for any "
        "application checklist items received since the last time the instance was run."
    ),
    params=ChecklistParams,
    select=_checklist,
    columns=(
        *STUDENT_COLUMNS,
        ("item", "Item"),
        ("received_at", "Received"),
        ("outstanding", "Required items still outstanding"),
    ),
    subject="{{ count | counted('application checklist item') }} received",
    intro="These application checklist items were received since the last run:",
    repeat="since_last_run",
)

# -- Activities --------------------------------------------------------------------------------


class ActivitiesParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADVISING"
    activity_types: Annotated[
        list[Code], Meta(min_length=1, max_length=50, description="activity type codes to alert on")
    ]
    statuses: AnyStatus = []
    first_run_look_back_days: LookBack = 1


async def _activities(q: Query[ActivitiesParams]) -> list[Row]:
    types = await _known(
        q, "activity_types", q.params.activity_types, "SELECT code FROM sis.activity_types"
    )
    args: list[Any] = [q.since, q.until, types]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, a.id AS activity_id, t.name AS activity, a.occurred_on,
               a.notes, a.added_by
          FROM sis.activities a JOIN sis.activity_types t ON t.code = a.activity_type
          JOIN sis.people p ON p.id = a.person_id
         WHERE a.added_at > $1 AND a.added_at <= $2 AND a.activity_type = ANY($3::text[])
           AND {q.where(args, statuses=sis.PERSON_STATUSES)}
         ORDER BY a.added_at, name"""
    return await rows_of(q, sql, args, lambda v: f"activity:{v['activity_id']}")


activities = Notifier(
    name="notifier.activities",
    title="Notifier: Activities",
    description=(
        "The activities notifier allows administrators to set up an alert that will trigger "
        "whenever a specific activity has taken place. Notifications can be created for a single "
        "activity or for multiple activities if the notifications will go to the same group."
    ),
    params=ActivitiesParams,
    select=_activities,
    columns=(
        *STUDENT_COLUMNS,
        ("activity", "Activity"),
        ("occurred_on", "On"),
        ("notes", "Notes"),
        ("added_by", "By"),
    ),
    subject="{{ count | counted('activity', 'activities') }} since the last run",
    intro="These activities were recorded since the last run:",
    repeat="since_last_run",
)

# -- DMS Notifications -------------------------------------------------------------------------


class DmsParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADMISSIONS"
    categories: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]],
        Meta(max_length=50, description="DMS categories to report; empty: every category"),
    ] = []
    statuses: AnyStatus = []
    first_run_look_back_days: LookBack = 1


async def _dms(q: Query[DmsParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until, [c.lower() for c in q.params.categories]]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, p.status, d.id AS document_id, d.dms_category AS category,
               regexp_replace(d.file_path, '^.*/', '') AS document, d.uploaded_at
          FROM sis.documents d JOIN sis.people p ON p.id = d.person_id
         WHERE d.uploaded_at > $1 AND d.uploaded_at <= $2
           AND (cardinality($3::text[]) = 0 OR lower(d.dms_category) = ANY($3::text[]))
           AND {q.where(args, statuses=sis.PERSON_STATUSES)}
         ORDER BY d.uploaded_at, name"""
    return await rows_of(q, sql, args, lambda v: f"document:{v['document_id']}")


dms_notifications = Notifier(
    name="notifier.dms_notifications",
    title="Notifier: DMS Notifications",
    description=(
        "The DMS Notifications notifier alerts the members of the selected group when a new "
        "document has been uploaded to the Document Management System. It will notify of all "
        "documents uploaded since the last time the instance was run. The notifier can be limited "
        "by Module Status, Division, Campus, Department, and/or Level as well as by the DMS Category."
    ),
    params=DmsParams,
    select=_dms,
    columns=(
        *STUDENT_COLUMNS,
        ("status", "Status"),
        ("category", "Category"),
        ("document", "Document"),
        ("uploaded_at", "Uploaded"),
    ),
    subject="{{ count | counted('document') }} uploaded",
    intro="These documents were uploaded since the last run:",
    repeat="since_last_run",
)

# -- Form Builder Forms Submitted ----------------------------------------------------------------


class FormsParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADMISSIONS"
    forms: Annotated[
        list[Code],
        Meta(max_length=50, description="codes of the forms to report; empty: every form"),
    ] = []
    statuses: AnyStatus = []
    first_run_look_back_days: LookBack = 1


async def _forms(q: Query[FormsParams]) -> list[Row]:
    codes = await _known(q, "forms", q.params.forms, "SELECT code FROM sis.forms")
    args: list[Any] = [q.since, q.until, codes]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, p.status, x.id AS submission_id, f.title AS form, x.submitted_at
          FROM sis.form_submissions x JOIN sis.forms f ON f.id = x.form_id
          JOIN sis.people p ON p.id = x.person_id
         WHERE x.submitted_at > $1 AND x.submitted_at <= $2
           AND (cardinality($3::text[]) = 0 OR f.code = ANY($3::text[]))
           AND {q.where(args, statuses=sis.PERSON_STATUSES)}
         ORDER BY x.submitted_at, name"""
    return await rows_of(q, sql, args, lambda v: f"form:{v['submission_id']}")


forms_submitted = Notifier(
    name="notifier.forms_submitted",
    title="Notifier: Form Builder Forms Submitted",
    description=(
        "The Form Builder Forms Submitted notifier sends a notification when forms created using "
        "the Form Builder utility are submitted: every submission since the last run, of the "
        "forms chosen."
    ),
    params=FormsParams,
    select=_forms,
    columns=(
        *STUDENT_COLUMNS,
        ("status", "Status"),
        ("form", "Form"),
        ("submitted_at", "Submitted"),
    ),
    subject="{{ count | counted('form') }} submitted",
    intro="These forms were submitted since the last run:",
    repeat="since_last_run",
)

# -- Loan Disbursement ---------------------------------------------------------------------------


class LoanParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "BURSAR"
    notify_students: NotifyStudents = True
    student_channel: Channel = "email"
    first_run_look_back_days: LookBack = 1


async def _loans(q: Query[LoanParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, x.id AS transaction_id, tc.name AS loan,
               (-x.amount)::numeric(12, 2) AS amount, x.posted_on, t.code AS term
          FROM sis.transactions x JOIN sis.transaction_codes tc ON tc.code = x.code
          JOIN sis.people p ON p.id = x.person_id
          LEFT JOIN sis.terms t ON t.id = x.term_id
         WHERE tc.is_loan AND x.amount < 0 AND x.created_at > $1 AND x.created_at <= $2
           AND {q.where(args)}
         ORDER BY name, x.posted_on"""
    return await rows_of(q, sql, args, lambda v: f"loan:{v['transaction_id']}")


loan_disbursement = Notifier(
    name="notifier.loan_disbursement",
    title="Notifier: Loan Disbursement",
    description=(
        "The Loan Disbursement notifier sends out an automated alert to students when their loans "
        "have been disbursed (posted to their account since the last run) and provides a list of "
        "the students whose loans were disbursed to another group of users."
    ),
    params=LoanParams,
    select=_loans,
    columns=(
        *STUDENT_COLUMNS,
        ("loan", "Loan"),
        ("amount", "Amount"),
        ("posted_on", "Posted"),
        ("term", "Term"),
    ),
    subject="{{ count | counted('loan disbursement') }}",
    intro="These loans were disbursed since the last run:",
    student_subject="Your loan has been disbursed",
    student_intro="These loan disbursements were posted to your account:",
    repeat="since_last_run",
)

# -- Alumni Employment ---------------------------------------------------------------------------


class AlumniEmploymentParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "REGISTRAR"


async def _alumni_employment(q: Query[AlumniEmploymentParams]) -> list[Row]:
    args: list[Any] = []
    sql = f"""
        SELECT p.id AS person_id, {NAME}, r.id AS record_id, r.employer, r.job_title, r.starts_on, r.added_at
          FROM sis.employment_records r JOIN sis.people p ON p.id = r.person_id
         WHERE r.entered_by_self AND r.confirmed_at IS NULL AND {q.where(args, statuses=("alumni",))}
         ORDER BY r.added_at, name"""
    return await rows_of(q, sql, args, lambda v: f"employment:{v['record_id']}")


alumni_employment = Notifier(
    name="notifier.alumni_employment",
    title="Notifier: Alumni Employment",
    description=(
        "The Alumni Employment notifier sends an alert when employment records have been added by "
        "alumni and have not yet been confirmed by an administrator; each record is told once."
    ),
    params=AlumniEmploymentParams,
    select=_alumni_employment,
    columns=(
        *STUDENT_COLUMNS,
        ("employer", "Employer"),
        ("job_title", "Title"),
        ("starts_on", "From"),
        ("added_at", "Added"),
    ),
    subject="{{ count | counted('employment record') }} to confirm",
    intro="Alumni added these employment records; they are not yet confirmed:",
    repeat="once_per_item",
)

# -- Financial Aid Verification ------------------------------------------------------------------


class VerificationParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "BURSAR"
    first_run_look_back_days: LookBack = 1


async def _verification(q: Query[VerificationParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, i.id AS isir_id, i.award_year, i.transaction_number,
               i.verification_tracking_flag, i.transaction_process_date, i.imported_at
          FROM sis.isirs i JOIN sis.people p ON p.id = i.person_id
         WHERE i.selected_for_verification = 'Y' AND i.imported_at > $1 AND i.imported_at <= $2
           AND {q.where(args)}
         ORDER BY name, i.award_year, i.transaction_number"""
    return await rows_of(q, sql, args, lambda v: f"isir:{v['isir_id']}")


financial_aid_verification = Notifier(
    name="notifier.financial_aid_verification",
    title="Notifier: Financial Aid Verification",
    description=(
        "The Financial Aid Verification notifier alerts the group when there is an ISIR imported "
        "(since the last run) that has been selected for verification. The notifier can be "
        "limited by Division, Campus, Department, and/or Level."
    ),
    params=VerificationParams,
    select=_verification,
    columns=(
        *STUDENT_COLUMNS,
        ("award_year", "Award year"),
        ("transaction_number", "Transaction"),
        ("verification_tracking_flag", "Tracking group"),
        ("transaction_process_date", "Processed"),
    ),
    subject="{{ count | counted('ISIR') }} selected for verification",
    intro="These imported ISIRs were selected for verification:",
    repeat="since_last_run",
)
