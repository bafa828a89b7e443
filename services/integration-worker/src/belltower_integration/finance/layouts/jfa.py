"""Jenzabar Financial Aid (JFA) user export. The JFA integration's file layout is documented only
to Jenzabar customers; this comma-delimited layout is Belltower's own (replace this module with
the school's JFA import definition)."""

from __future__ import annotations

from ..layout import Field, Layout

USERS = Layout(
    partner="jfa",
    kind="users",
    title="JFA user export (exported)",
    fields=(
        Field("StudentId", "sis_id"),
        Field("LastName", "last_name"),
        Field("FirstName", "first_name"),
        Field("MiddleName", "middle_name", required=False),
        Field("BirthDate", "birth_date", "date", required=False),
        Field("Email", "email", required=False),
        Field("Phone", "phone", required=False),
        Field("Street", "street", required=False),
        Field("City", "city", required=False),
        Field("State", "region", required=False),
        Field("PostalCode", "postal_code", required=False),
        Field("Status", "status", doc="people.status"),
        Field("Division", "division", required=False),
        Field("Campus", "campus", required=False),
        Field("Level", "level", required=False),
        Field("TermCredits", "credits", "money", doc="enrolled credits in the chosen term"),
    ),
)
