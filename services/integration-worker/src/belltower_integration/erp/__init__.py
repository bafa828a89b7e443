"""Focus ERP's accounts receivable and point of sale: the finance jobs of the Focus catalog
(seed 001) over the ``sis.erp_*`` tables (migration 0061) and, for the adult fees, the schedule
records (0064). See docs/erp-finance.md."""

from typing import Any

from belltower.jobtypes import JobType

from . import (
    adult_fees,
    agreements,
    benefits,
    cashout,
    customers,
    fees,
    field_trips,
    invoices,
    pcard,
    receipts,
)

JOB_TYPES: list[JobType[Any]] = [
    invoices.automatic_billing_type,
    invoices.void_overdue_type,
    invoices.delete_stale_type,
    invoices.payment_plan_type,
    invoices.table_update_type,
    cashout.store_cashout_type,
    cashout.portal_cashout_type,
    receipts.job_type,
    pcard.job_type,
    field_trips.job_type,
    customers.job_type,
    fees.job_type,
    benefits.benefits_type,
    benefits.retiree_benefits_type,
    agreements.job_type,
    adult_fees.job_type,
]
