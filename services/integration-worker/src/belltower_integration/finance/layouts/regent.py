"""Regent Award disbursement files. Regent Award publishes no public file specification: this
layout is Belltower's own (comma-delimited with a header line); replace this module with the
layout from the school's Regent integration documentation."""

from __future__ import annotations

from ..layout import Field, Layout

DISBURSEMENTS = Layout(
    partner="regent",
    kind="disbursements",
    title="Regent Award disbursements (imported)",
    fields=(
        Field("student_id", "sis_id", doc="people.sis_id"),
        Field("award_year", "award_year", doc="YYYY-YY, e.g. 2026-27"),
        Field("award_id", "external_ref", doc="aid_awards.external_ref (source regent)"),
        Field("fund_code", "fund_code", doc="a financial_aid transaction_codes.code"),
        Field("term_code", "term_code", required=False),
        Field(
            "award_status",
            "status",
            "code",
            choices=("offered", "accepted", "declined", "cancelled"),
        ),
        Field("offered_amount", "offered", "money"),
        Field("accepted_amount", "accepted", "money"),
        Field("disbursement_number", "sequence", "int", required=False, doc="1, 2, ... per award"),
        Field("disbursement_amount", "amount", "money", required=False),
        Field("disbursement_date", "disbursed_on", "date", required=False),
    ),
)
