"""Nelnet (Campus Commerce / Enterprise) files. Nelnet publishes no public file specification:
these layouts are Belltower's own, pipe-delimited with a header line; a school whose Nelnet
contract carries a specification replaces this module. The customer id is the SIS id
(``people.sis_id``) unless the billing account carries ``nelnet_customer_id``."""

from __future__ import annotations

from ..layout import Field, Layout

EOD_TRANSACTIONS = Layout(
    partner="nelnet",
    kind="eod_transactions",
    title="Nelnet End of Day transactions (imported)",
    delimiter="|",
    fields=(
        Field("TransactionId", "external_ref", doc="Nelnet's id; a posting is made once per id"),
        Field(
            "CustomerId", "customer_id", doc="the student: SIS id or billing account's Nelnet id"
        ),
        Field("TransactionDate", "posted_on", "date"),
        Field(
            "TransactionType",
            "type",
            "code",
            choices=("PAYMENT", "ACH", "ACH_RETURN", "REVERSAL"),
            doc="PAYMENT/ACH credit the account; ACH_RETURN/REVERSAL charge it back",
        ),
        Field("Amount", "amount", "money", doc="positive; the type gives the sign"),
        Field("TermCode", "term_code", required=False, doc="terms.code"),
        Field("Description", "description", required=False),
    ),
)

EOD_AGREEMENTS = Layout(
    partner="nelnet",
    kind="eod_agreements",
    title="Nelnet End of Day agreements: payment plan additions and edits (imported)",
    delimiter="|",
    fields=(
        Field("AgreementId", "external_ref", doc="payment_plans.external_ref"),
        Field("CustomerId", "customer_id"),
        Field("PlanCode", "plan_code"),
        Field("TermCode", "term_code", required=False),
        Field("Status", "status", "code", choices=("ACTIVE", "CANCELLED", "COMPLETED")),
        Field("Budget", "budget", "money"),
        Field("Installments", "installments", "int"),
        Field("EnrolledDate", "enrolled_on", "date"),
    ),
)

CURRENT_BALANCE = Layout(
    partner="nelnet",
    kind="current_balance",
    title="Nelnet current balances (exported)",
    delimiter="|",
    fields=(
        Field("CustomerId", "customer_id"),
        Field("StudentId", "sis_id", doc="people.sis_id"),
        Field("LastName", "last_name"),
        Field("FirstName", "first_name"),
        Field(
            "Email", "email", required=False, doc="billing account's statement e-mail, else primary"
        ),
        Field("Balance", "balance", "money", doc="sum of the ledger: > 0 due, < 0 credit"),
        Field("AsOfDate", "as_of", "date"),
    ),
)

EBILL = Layout(
    partner="nelnet",
    kind="ebill",
    title="Nelnet eBill transactions (exported)",
    delimiter="|",
    fields=(
        Field("CustomerId", "customer_id"),
        Field("StudentId", "sis_id"),
        Field("TransactionId", "transaction_id", "int", doc="transactions.id"),
        Field("PostedDate", "posted_on", "date"),
        Field("Code", "code", doc="transactions.code"),
        Field("Description", "description", required=False),
        Field("Amount", "amount", "money", doc="> 0 a charge, < 0 a payment or credit"),
        Field("TermCode", "term_code", required=False),
    ),
)

REFUND_RESPONSE = Layout(
    partner="nelnet",
    kind="refund_response",
    title="Nelnet refund responses (imported)",
    delimiter="|",
    fields=(
        Field("RefundId", "refund_id", "int", doc="refunds.id as the SONIS refund export sent it"),
        Field("CustomerId", "customer_id"),
        Field("Amount", "amount", "money", doc="must equal the refund's amount"),
        Field("Status", "status", "code", choices=("SENT", "FAILED")),
        Field("ReasonCode", "reason_code", required=False),
        Field("Message", "message", required=False),
        Field("ProcessedDate", "processed_on", "date"),
    ),
)
