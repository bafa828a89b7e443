"""Focus's Student Support Services jobs: ``sss.deactivate_mtss_withdrawn`` (Deactivate MTSS events
for withdrawn students), ``sss.mtss_enrollment_alert`` (Alert when existing MTSS students enroll)
and ``sss.remove_fefp_dismissed`` (Remove FEFP code from dismissed students).

- Deactivate: a student withdrawn from a school (their enrollment there of the default school
  year has a drop code or ended before the day, and none there is active) has that school's
  active MTSS events made inactive (the Inactive Events tab), with the day and the reason.
- Alert: a student with inactive MTSS events of another school who has an active enrollment
  of the default school year at this school, with an enrollment date and code, gets one SSS
  event alert (``sis.portal_alerts``) for the profile of the preference
  ``mtss_enrollment_alert_profile``, keyed by that enrollment, so it is raised once.
- Remove FEFP code: a student of the school whose active ESE exceptionalities are all
  dismissed (service type D with a dismissal date on or before the day) has the student
  fields ``ese_code`` (Focus's custom_698) and the Charter/McKay field named by the preference
  ``sss_charter_mckay_field`` set to null.

Each changes only what differs, one transaction per school, with a dry run.
"""

from __future__ import annotations

from typing import Any

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Scope, each_school, preference
from .school_year import default_school_year

ESE_CODE = "ese_code"


class SssParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


async def run_deactivate(ctx: JobContext, params: SssParams) -> None:
    async def work(scope: Scope) -> Counts:
        year = await default_school_year(scope.conn, scope.today)
        rows = await scope.conn.fetch(
            """UPDATE sis.mtss_events m SET active = false, inactivated_on = $2,
                      inactivated_reason = 'withdrawn from ' || d.code, occurrence_id = $4
                 FROM sis.divisions d, sis.people p
                WHERE d.id = m.division_id AND p.id = m.person_id AND m.active AND m.division_id = $1
                  AND EXISTS (SELECT 1 FROM sis.student_enrollments se
                               WHERE se.person_id = m.person_id AND se.division_id = $1 AND se.school_year = $3
                                 AND (se.drop_code IS NOT NULL OR se.ends_on < $2))
                  AND NOT EXISTS (SELECT 1 FROM sis.student_enrollments se
                               WHERE se.person_id = m.person_id AND se.division_id = $1 AND se.school_year = $3
                                 AND se.drop_code IS NULL AND (se.ends_on IS NULL OR se.ends_on >= $2))
            RETURNING m.person_id""",
            scope.division_id, scope.today, year, scope.occurrence_id,
        )  # fmt: skip
        return {"events inactivated": len(rows), "students": len({r[0] for r in rows})}

    report = await each_school(ctx, params, "Deactivate MTSS events for withdrawn students", work)
    report.write(ctx)


async def run_alert(ctx: JobContext, params: SssParams) -> None:
    async def work(scope: Scope) -> Counts:
        year = await default_school_year(scope.conn, scope.today)
        profile = await preference(scope.conn, "mtss_enrollment_alert_profile", "SSS Coordinator")
        rows = await scope.conn.fetch(
            """SELECT se.id, se.person_id, p.sis_id, p.first_name || ' ' || p.last_name AS name,
                      count(m.id)::int AS events, string_agg(DISTINCT d.code, ', ') AS schools
                 FROM sis.student_enrollments se
                 JOIN sis.people p ON p.id = se.person_id
                 JOIN sis.mtss_events m ON m.person_id = se.person_id AND NOT m.active AND m.division_id <> $1
                 JOIN sis.divisions d ON d.id = m.division_id
                WHERE se.division_id = $1 AND se.school_year = $3 AND se.drop_code IS NULL
                  AND se.enrollment_code IS NOT NULL AND se.starts_on <= $2
                  AND (se.ends_on IS NULL OR se.ends_on >= $2)
                GROUP BY se.id, se.person_id, p.sis_id, p.first_name, p.last_name
                ORDER BY p.sis_id""",
            scope.division_id, scope.today, year,
        )  # fmt: skip
        raised = 0
        for r in rows:
            made = await scope.conn.fetchval(
                """INSERT INTO sis.portal_alerts (profile, division_id, person_id, kind, message, source_key)
                   VALUES ($1, $2, $3, 'SSS event alert', $4, $5) ON CONFLICT (source_key) DO NOTHING
                   RETURNING id""",
                profile, scope.division_id, r["person_id"],
                f"{r['name']} ({r['sis_id']}) enrolled with {r['events']} inactive MTSS event(s) "
                f"from {r['schools']} to review",
                f"mtss-enrollment:{r['id']}",
            )  # fmt: skip
            raised += made is not None
        return {"alerts raised": raised, "already alerted": len(rows) - raised}

    report = await each_school(ctx, params, "Alert when existing MTSS students enroll", work)
    report.write(ctx)


async def run_remove_fefp(ctx: JobContext, params: SssParams) -> None:
    notes: list[str] = []

    async def work(scope: Scope) -> Counts:
        mckay = await preference(scope.conn, "sss_charter_mckay_field", "charter_mckay")
        if not notes:
            notes.append(f"fields cleared: {ESE_CODE} (custom_698) and {mckay}")
        args: list[Any] = [scope.today, [ESE_CODE, mckay], scope.occurrence_id]
        rows = await scope.conn.fetch(
            f"""UPDATE sis.student_field_values f SET value = NULL, updated_at = now(), occurrence_id = $3
                  FROM sis.people p
                 WHERE p.id = f.person_id AND f.field = ANY($2::text[]) AND f.value IS NOT NULL
                   AND {scope.students(args)}
                   AND EXISTS (SELECT 1 FROM sis.ese_exceptionalities x WHERE x.person_id = p.id AND x.active)
                   AND NOT EXISTS (SELECT 1 FROM sis.ese_exceptionalities x
                                    WHERE x.person_id = p.id AND x.active
                                      AND NOT (x.service_type = 'D' AND x.dismissed_on <= $1))
             RETURNING f.person_id""",
            *args,
        )
        return {"fields cleared": len(rows), "students": len({r[0] for r in rows})}

    report = await each_school(ctx, params, "Remove FEFP code from dismissed students", work)
    report.notes.extend(notes)
    report.write(ctx)


deactivate_type = JobType(
    name="sss.deactivate_mtss_withdrawn",
    pool="integration",
    title="Deactivate MTSS events for withdrawn students (SSS)",
    description=(
        "Inactivates the active MTSS events of a student withdrawn from their current school; "
        "they move to the Inactive Events tab. From "
        + SEED_001
        + ": 'Deactivate MTSS events for withdrawn students (SSS)'."
    ),
    params=SssParams,
    run=run_deactivate,
)

alert_type = JobType(
    name="sss.mtss_enrollment_alert",
    pool="integration",
    title="Alert when existing MTSS students enroll (SSS)",
    description=(
        "Creates an SSS event alert in the Portal, for the MTSS enrollment alert profile, when a "
        "student with inactive MTSS events enrolls in a new school, once per enrollment. From "
        + SEED_001
        + ": 'Alert when existing MTSS students enroll (SSS)'."
    ),
    params=SssParams,
    run=run_alert,
)

remove_fefp_type = JobType(
    name="sss.remove_fefp_dismissed",
    pool="integration",
    title="Remove FEFP code from dismissed students (SSS)",
    description=(
        "Sets the ESE FEFP Code (custom_698, ese_code) and the district's Charter/McKay field "
        "to null for students whose active ESE exceptionalities are all dismissed (service "
        "type D-Dismiss with a dismissal date). From "
        + SEED_001
        + ": 'Remove FEFP code from dismissed students (SSS)'."
    ),
    params=SssParams,
    run=run_remove_fefp,
)

JOB_TYPES: list[JobType[Any]] = [deactivate_type, alert_type, remove_fefp_type]
