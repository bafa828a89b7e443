"""Billing and aid notifiers: new Nelnet payment plan enrollments, JFA awards waiting."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import NAME, STUDENT_COLUMNS, LookBack, Meta, Statuses, rows_of

# -- Nelnet Payment Plans Enrollment Import -----------------------------------------------------


class PlanEnrollmentParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "BURSAR"
    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    first_run_look_back_days: LookBack = 1


async def _plan_enrollments(q: Query[PlanEnrollmentParams]) -> list[Row]:
    args: list[Any] = [q.since, q.until]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, pp.id AS plan_id, pp.plan_code, pp.external_ref AS agreement,
               t.code AS term, pp.budget, pp.installments, pp.enrolled_on
          FROM sis.payment_plans pp JOIN sis.people p ON p.id = pp.person_id
          LEFT JOIN sis.terms t ON t.id = pp.term_id
         WHERE pp.provider = 'nelnet' AND pp.added_at > $1 AND pp.added_at <= $2
           AND {q.where(args)}
         ORDER BY name, pp.enrolled_on"""
    return await rows_of(q, sql, args, lambda v: f"plan:{v['plan_id']}")


nelnet_plan_enrollments = Notifier(
    name="notifier.nelnet_plan_enrollments",
    title="Notifier: Nelnet Payment Plans Enrollment Import",
    description=(
        "The Nelnet Enrollment Import notifier alerts the selected group when a user enrolls in a "
        "Nelnet payment plan: every plan the Nelnet Batch File Import added since the last run. "
        "It can be limited by Module Status, Division, Campus, Department, and/or Level."
    ),
    params=PlanEnrollmentParams,
    select=_plan_enrollments,
    columns=(
        *STUDENT_COLUMNS,
        ("plan_code", "Plan"),
        ("agreement", "Agreement"),
        ("term", "Term"),
        ("budget", "Budget"),
        ("installments", "Installments"),
        ("enrolled_on", "Enrolled"),
    ),
    subject="{{ count | counted('new Nelnet payment plan') }}",
    intro="These people enrolled in a Nelnet payment plan since the last run:",
    repeat="since_last_run",
)

# -- JFA Awards ---------------------------------------------------------------------------------


class JfaAwardsParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "BURSAR"
    source: Annotated[
        str, Meta(pattern=r"^[a-z0-9_]{1,32}$", description="the aid system the awards came from")
    ] = "jfa"
    older_than_days: Annotated[
        int, Meta(ge=0, le=3650, description="only awards waiting at least this many days")
    ] = 0


async def _jfa_awards(q: Query[JfaAwardsParams]) -> list[Row]:
    args: list[Any] = [q.params.source, q.until, q.params.older_than_days]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, a.id AS award_id, a.award_year, a.fund_code, a.status,
               a.offered, a.accepted, a.added_at::date AS received_on, t.code AS term
          FROM sis.aid_awards a JOIN sis.people p ON p.id = a.person_id
          LEFT JOIN sis.terms t ON t.id = a.term_id
         WHERE a.source = $1 AND a.processed_at IS NULL AND a.status IN ('offered', 'accepted')
           AND a.added_at <= $2::timestamptz - make_interval(days => $3::int)
           AND {q.where(args)}
         ORDER BY a.added_at, name"""
    return await rows_of(q, sql, args, lambda v: f"award:{v['award_id']}")


jfa_awards = Notifier(
    name="notifier.jfa_awards",
    title="Notifier: JFA Awards",
    description=(
        "The JFA Awards notification alerts users when there are outstanding awards from "
        "Jenzabar Financial Aid waiting to be processed (offered or accepted, not yet processed "
        "into the student's account), every run while they wait."
    ),
    params=JfaAwardsParams,
    select=_jfa_awards,
    columns=(
        *STUDENT_COLUMNS,
        ("award_year", "Award year"),
        ("term", "Term"),
        ("fund_code", "Fund"),
        ("status", "Status"),
        ("offered", "Offered"),
        ("accepted", "Accepted"),
        ("received_on", "Received"),
    ),
    subject="{{ count | counted('JFA award') }} waiting to be processed",
    intro="These financial aid awards are waiting to be processed:",
)
