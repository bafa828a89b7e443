"""Student-account notifiers: balances due and credit balances."""

from __future__ import annotations

from typing import Annotated, Any

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import (
    NAME,
    STUDENT_COLUMNS,
    Channel,
    Meta,
    NotifyStudents,
    rows_of,
)


class BalanceDueParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "BURSAR"
    minimum_balance: Annotated[
        float, Meta(gt=0, description="report balances due of at least this amount")
    ] = 0.01
    notify_students: NotifyStudents = False
    student_channel: Channel = "email"


async def _balance_due(q: Query[BalanceDueParams]) -> list[Row]:
    args: list[Any] = [q.params.minimum_balance]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, b.balance, b.last_posted_on
          FROM sis.balances b JOIN sis.people p ON p.id = b.person_id
         WHERE b.balance >= $1 AND {q.where(args)}
         ORDER BY b.balance DESC, name"""
    return await rows_of(q, sql, args, lambda v: "balance")


balance_due = Notifier(
    name="notifier.balance_due",
    title="Notifier: Balance Due",
    description=(
        "The Balance Due notifier is designed to inform staff members that a student has an "
        "outstanding balance that needs to be paid."
    ),
    params=BalanceDueParams,
    select=_balance_due,
    columns=(*STUDENT_COLUMNS, ("balance", "Balance due"), ("last_posted_on", "Last posting")),
    subject="{{ count | counted('student') }} with a balance due",
    intro="These students have an outstanding balance of at least {{ params.minimum_balance }}:",
    student_subject="You have a balance due",
    student_intro="Your student account has an outstanding balance. Please pay it or contact the bursar's office.",
)


class CreditBalanceParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "BURSAR"
    minimum_credit: Annotated[
        float, Meta(gt=0, description="report credit balances of at least this amount")
    ] = 0.01


async def _credit_balance(q: Query[CreditBalanceParams]) -> list[Row]:
    args: list[Any] = [q.today, q.params.minimum_credit]
    sql = f"""
        WITH ledger AS (
            SELECT t.person_id, sum(t.amount) AS balance,
                   max(t.posted_on) FILTER (WHERE tc.kind = 'financial_aid' AND tc.post_award) AS last_aid_on
              FROM sis.transactions t
              JOIN sis.transaction_codes tc ON tc.code = t.code
              LEFT JOIN sis.terms term ON term.id = t.term_id
             WHERE t.term_id IS NULL OR term.starts_on <= $1
             GROUP BY t.person_id)
        SELECT p.id AS person_id, {NAME}, (-l.balance)::numeric(12, 2) AS credit, l.last_aid_on
          FROM ledger l JOIN sis.people p ON p.id = l.person_id
         WHERE -l.balance >= $2 AND {q.where(args)}
         ORDER BY credit DESC, name"""
    return await rows_of(q, sql, args, lambda v: "credit")


credit_balance = Notifier(
    name="notifier.credit_balance",
    title="Notifier: Credit Balance",
    description=(
        "The Credit Balance notifier sends an alert to the members of the notification group "
        "showing the students that have credit balances and the date the last financial aid "
        "payment was applied to their accounts. The notifier only includes T-codes that have the "
        "Post Award box checked. It calculates balances and shows dates based on the current "
        "system variables in the current school year/semester and before."
    ),
    params=CreditBalanceParams,
    select=_credit_balance,
    columns=(
        *STUDENT_COLUMNS,
        ("credit", "Credit balance"),
        ("last_aid_on", "Last post-award aid"),
    ),
    subject="{{ count | counted('student') }} with a credit balance",
    intro="These students have a credit balance in the current term and before "
    "(last financial aid payment from post-award T-codes shown):",
)
