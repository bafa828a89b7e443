"""PeopleSoft General Ledger journal export. PeopleSoft's flat-file journal import is configured
per installation (a File Layout definition); this fixed-width journal line is Belltower's own,
to map in that definition or to replace with the school's own layout here."""

from __future__ import annotations

from ..layout import Field, Layout

JOURNAL = Layout(
    partner="peoplesoft",
    kind="journal",
    title="PeopleSoft GL journal lines (exported)",
    delimiter=None,
    fields=(
        Field("BUSINESS_UNIT", "business_unit", width=5),
        Field("JOURNAL_ID", "journal_id", width=10),
        Field("JOURNAL_DATE", "journal_date", "date", width=8),
        Field("JOURNAL_LINE", "line", "int", width=9),
        Field(
            "ACCOUNT", "account", width=10, doc="the transaction code's account (param accounts)"
        ),
        Field("MONETARY_AMOUNT", "amount", "money", width=16, doc="sum of the code's postings"),
        Field("LINE_DESCR", "description", width=30),
        Field("POSTINGS", "postings", "int", width=7, doc="how many postings the line sums"),
    ),
)
