"""Focus's school record jobs: ``health.medical`` (Medical) and
``staff.update_teacher_certification`` (Update Teacher Certification).

- Medical: each active medication order that applies today (from When Admin Start, or the Date
  of Order when none, through When Admin End) gets, for each of its administration times, an
  event of today on the calendar of every school the student is enrolled in today
  (``sis.student_enrollments``), in the category of the preference
  ``medication_administration_category`` and for the profile
  ``medication_administrator_profile``. An event is keyed by (job, student, day, time, school,
  medication, form, profile), so one is never added twice, and an order whose medication or
  form changes gets a new event (the seed: "if there is no event that matches"). Each counted order's pill count is its pills dispensed less the pills of
  the doses given (``sis.medication_administrations``).
- Update Teacher Certification: each section of a term not yet ended, in the school, is
  checked against its course's Course Code Directory codes (``sis.course_certifications``) and
  its lead teacher's certificates valid on the day (``sis.teacher_certifications``): in field
  when a certificate has an accepted code and scope, out of field when none has; no
  requirement when the course lists no code. A certificate that meets a three-digit coverage
  group code meets it whatever its scope, unless the Directory's scope is A, L or T, which must
  then match (the seed's rule).

Both write only what differs, one transaction per school, with a dry run.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Scope, each_school, preference

GROUP_SCOPES = frozenset({"A", "L", "T"})


class MedicalParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


def event_text(order: Any, student: str, profile: str) -> tuple[str, str]:
    form = f" ({order['form']})" if order["form"] else ""
    title = f"Medication: {order['medication']}{form} for {student}"
    description = f"Dose: {order['dose'] or 'as ordered'}. Administered by: {profile}."
    return title, description


async def run_medical(ctx: JobContext, params: MedicalParams) -> None:
    notes: list[str] = []

    async def work(scope: Scope) -> Counts:
        conn = scope.conn
        category = await preference(conn, "medication_administration_category", "Medical")
        profile = await preference(conn, "medication_administrator_profile", "Nurse")
        try:
            zone = ZoneInfo(await preference(conn, "time_zone", "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        if not notes:
            notes.append(f"category {category}, for profile {profile}")
        orders = await conn.fetch(
            """SELECT o.*, p.sis_id, p.first_name || ' ' || p.last_name AS student,
                      (SELECT coalesce(sum(a.doses), 0) FROM sis.medication_administrations a
                        WHERE a.order_id = o.id)::int AS doses_given
                 FROM sis.medication_orders o JOIN sis.people p ON p.id = o.person_id
                WHERE o.active AND coalesce(o.admin_starts_on, o.ordered_on) <= $2
                  AND (o.admin_ends_on IS NULL OR o.admin_ends_on >= $2)
                  AND EXISTS (SELECT 1 FROM sis.student_enrollments se
                               WHERE se.person_id = o.person_id AND se.division_id = $1
                                 AND se.drop_code IS NULL AND se.starts_on <= $2
                                 AND (se.ends_on IS NULL OR se.ends_on >= $2))
                ORDER BY p.sis_id, o.id""",
            scope.division_id, scope.today,
        )  # fmt: skip
        counts = {"events added": 0, "events already there": 0, "pill counts updated": 0}
        for order in orders:
            title, description = event_text(order, order["student"], profile)
            for at in sorted(order["admin_times"]):
                what = "|".join((order["medication"], order["form"], profile)).lower()
                digest = hashlib.sha256(what.encode()).hexdigest()[:16]
                key = f"medication:{order['person_id']}:{scope.today.isoformat()}:{at:%H:%M}:{scope.code}:{digest}"
                starts = datetime.combine(scope.today, time(at.hour, at.minute), zone)
                made = await conn.fetchval(
                    """INSERT INTO sis.calendar_events (calendar, title, description, starts_at, source,
                              source_job_id, source_key, category, person_id)
                       VALUES ($1, $2, $3, $4, 'medical', $5, $6, $7, $8)
                       ON CONFLICT (source_job_id, source_key) DO NOTHING RETURNING id""",
                    scope.code, title, description, starts, scope.job_id, key, category,
                    order["person_id"],
                )  # fmt: skip
                counts["events added" if made is not None else "events already there"] += 1
            if order["pills_dispensed"] is not None:
                left = order["pills_dispensed"] - order["doses_given"] * order["pills_per_dose"]
                if order["pill_count"] != left:
                    await conn.execute(
                        "UPDATE sis.medication_orders SET pill_count = $2 WHERE id = $1",
                        order["id"], left,
                    )  # fmt: skip
                    counts["pill counts updated"] += 1
                if left <= 0:
                    notes.append(
                        f"{scope.code} {order['sis_id']}: {order['medication']} has {left} pills left"
                    )
        return counts

    report = await each_school(ctx, params, "Medical", work)
    report.notes[:0] = notes[:1]
    report.notes.extend(notes[1:])
    report.write(ctx)


# -- Update Teacher Certification ---------------------------------------------------------------


class CertificationParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


def meets(cert_code: str, cert_scope: str, need_code: str, need_scope: str) -> bool:
    """Whether a certificate (code, scope) meets one Course Code Directory entry (code, scope)."""
    if cert_code.upper() != need_code.upper():
        return False
    need, have = need_scope.upper(), cert_scope.upper()
    if len(need_code) == 3 and need_code.isdigit():
        return need not in GROUP_SCOPES or have == need
    return not need or have == need


def status_of(
    teacher: int | None, needs: list[tuple[str, str]], certs: list[tuple[int, str, str]]
) -> tuple[str, int | None]:
    """A section's status and the certificate that meets it."""
    if not needs:
        return "no requirement", None
    if teacher is None:
        return "no teacher", None
    for cert_id, code, scope in certs:
        if any(meets(code, scope, need_code, need_scope) for need_code, need_scope in needs):
            return "in field", cert_id
    return "out of field", None


async def run_certification(ctx: JobContext, params: CertificationParams) -> None:
    async def work(scope: Scope) -> Counts:
        conn = scope.conn
        sections = await conn.fetch(
            """SELECT s.id, s.course_id, s.lead_faculty_id, s.cert_status, s.cert_met_by
                 FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id
                WHERE s.division_id = $1 AND t.ends_on >= $2 ORDER BY s.id FOR UPDATE OF s""",
            scope.division_id, scope.today,
        )  # fmt: skip
        needs: dict[int, list[tuple[str, str]]] = {}
        for r in await conn.fetch(
            "SELECT course_id, code, scope FROM sis.course_certifications WHERE course_id = ANY($1::bigint[])",
            list({s["course_id"] for s in sections}),
        ):
            needs.setdefault(r["course_id"], []).append((r["code"], r["scope"]))
        certs: dict[int, list[tuple[int, str, str]]] = {}
        for r in await conn.fetch(
            """SELECT id, person_id, code, scope FROM sis.teacher_certifications
                WHERE person_id = ANY($1::bigint[]) AND (issued_on IS NULL OR issued_on <= $2)
                  AND (expires_on IS NULL OR expires_on >= $2) ORDER BY id""",
            list({s["lead_faculty_id"] for s in sections if s["lead_faculty_id"]}), scope.today,
        ):  # fmt: skip
            certs.setdefault(r["person_id"], []).append((r["id"], r["code"], r["scope"]))
        counts: Counts = {
            "in field": 0,
            "out of field": 0,
            "no requirement": 0,
            "no teacher": 0,
            "changed": 0,
        }
        for s in sections:
            status, met_by = status_of(
                s["lead_faculty_id"], needs.get(s["course_id"], []), certs.get(s["lead_faculty_id"], [])
            )  # fmt: skip
            counts[status] += 1
            if (s["cert_status"], s["cert_met_by"]) != (status, met_by):
                await conn.execute(
                    "UPDATE sis.sections SET cert_status = $2, cert_met_by = $3, cert_checked_at = now() WHERE id = $1",
                    s["id"], status, met_by,
                )  # fmt: skip
                counts["changed"] += 1
        return counts

    report = await each_school(ctx, params, "Update teacher certification", work)
    report.write(ctx)


medical_type = JobType(
    name="health.medical",
    pool="integration",
    title="Medical",
    description=(
        "Creates today's calendar events for each Medication Order (When Admin Start, When "
        "Admin End, Date of Order) at every school the student is enrolled in, unless an event "
        "for that medication, student, profile, time and form exists, and updates Pill Counts. "
        "From " + SEED_001 + ": 'Medical'."
    ),
    params=MedicalParams,
    run=run_medical,
)

certification_type = JobType(
    name="staff.update_teacher_certification",
    pool="integration",
    title="Update Teacher Certification",
    description=(
        "Recalculates the Cert/Licensure/Qual status of each course section (in or out of "
        "field) from its teacher's imported certification and the course's Course Code "
        "Directory codes; schedule it after the HR import. From "
        + SEED_001
        + ": 'Update Teacher Certification'."
    ),
    params=CertificationParams,
    run=run_certification,
)
