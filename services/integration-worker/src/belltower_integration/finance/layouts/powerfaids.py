"""PowerFAIDS export (the seed's "flat file with a .txt extension"). College Board documents the
PowerFAIDS import record layouts only to its customers; none is public, so this fixed-width
enrollment record is Belltower's own: map it in PowerFAIDS' import definition, or replace this
module with the layout of the school's import definition."""

from __future__ import annotations

from ..layout import Field, Layout

ENROLLMENT = Layout(
    partner="powerfaids",
    kind="enrollment",
    title="PowerFAIDS enrollment flat file (exported, .txt)",
    delimiter=None,
    fields=(
        Field("Student ID", "sis_id", width=12, doc="people.sis_id"),
        Field("Last Name", "last_name", width=30),
        Field("First Name", "first_name", width=20),
        Field("Middle Name", "middle_name", width=15, required=False),
        Field("Birth Date", "birth_date", "date", width=8, required=False, doc="YYYYMMDD"),
        Field("Award Year", "award_year", width=7, doc="YYYY-YY"),
        Field("Term", "term_code", width=10, doc="terms.code"),
        Field("Enrolled Credits", "credits", "money", width=7, doc="sum of enrolled credits"),
        Field(
            "Enrollment Status",
            "enrollment_status",
            "code",
            width=1,
            choices=("F", "T", "H", "L", "N"),
            doc="F full, T three-quarter, H half, L less than half time, N not enrolled",
        ),
        Field("Level", "level", width=8, required=False),
        Field("Division", "division", width=8, required=False),
        Field("Campus", "campus", width=8, required=False),
        Field("Email", "email", width=60, required=False),
    ),
)
