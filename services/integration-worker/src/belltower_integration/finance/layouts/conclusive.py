"""Conclusive Goals (Advisor degree audit) export. Conclusive's integration format is given to
its customers only; this comma-delimited course history is Belltower's own (replace this module
with the layout from the Conclusive Goals integration page)."""

from __future__ import annotations

from ..layout import Field, Layout

COURSE_HISTORY = Layout(
    partner="conclusive",
    kind="course_history",
    title="Conclusive Advisor course history (exported)",
    fields=(
        Field("student_id", "sis_id"),
        Field("last_name", "last_name"),
        Field("first_name", "first_name"),
        Field("level", "level", required=False),
        Field("department", "department", required=False, doc="the student's program department"),
        Field("term", "term_code"),
        Field("course", "course_code"),
        Field("section", "section_code"),
        Field("title", "course_title"),
        Field("credits", "credits", "money"),
        Field("grade", "grade", required=False, doc="NULL while in progress"),
        Field("status", "status", doc="enrollments.status"),
    ),
)
