"""The Billing Summary: one line per student account. Its fields are the choices a school makes
for its "custom version" of the report (param ``columns``); the layout is Belltower's own."""

from __future__ import annotations

from ..layout import Field, Layout

SUMMARY = Layout(
    partner="billing",
    kind="summary",
    title="Billing Summary (exported)",
    fields=(
        Field("Student ID", "sis_id"),
        Field("Last Name", "last_name"),
        Field("First Name", "first_name"),
        Field("Email", "email", required=False, doc="statement e-mail, else the primary e-mail"),
        Field(
            "Paperless", "paperless", "code", choices=("Y", "N"), doc="billing_accounts.paperless"
        ),
        Field("Term", "term_code", required=False),
        Field("Charges", "charges", "money", doc="the term's charges (all terms when none chosen)"),
        Field("Payments", "payments", "money", doc="payments, as a positive amount"),
        Field("Financial Aid", "aid", "money", doc="aid credited, as a positive amount"),
        Field("Other Credits", "other", "money", doc="refunds and adjustments (signed)"),
        Field("Balance", "balance", "money", doc="> 0 due, < 0 credit balance"),
        Field("Last Posting", "last_posted_on", "date", required=False),
        Field("Payment Plan", "plan_code", required=False, doc="an active payment plan's code"),
    ),
)
