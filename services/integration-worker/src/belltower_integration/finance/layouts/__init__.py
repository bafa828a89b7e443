"""Each partner's file layouts, one module per partner (replace a module to follow a partner's
published specification); ``ALL`` lists every layout for the docs and the tests."""

from __future__ import annotations

from ..layout import Layout
from . import billing, conclusive, jfa, nelnet, peoplesoft, powerfaids, regent

ALL: tuple[Layout, ...] = (
    billing.SUMMARY,
    powerfaids.ENROLLMENT,
    regent.DISBURSEMENTS,
    nelnet.EOD_TRANSACTIONS,
    nelnet.EOD_AGREEMENTS,
    nelnet.CURRENT_BALANCE,
    nelnet.EBILL,
    nelnet.REFUND_RESPONSE,
    jfa.USERS,
    peoplesoft.JOURNAL,
    conclusive.COURSE_HISTORY,
)

__all__ = ["ALL"]
