"""A section's stored display title (``sections.title``, migration 0064), made from its parts.

The title is what rosters, schedules and gradebooks show; it is stored, so an edit made straight
in the database (a course retitled, a period or a teacher changed) leaves it stale until
**Retitle Sections** recomputes it. The demo school stores the titles this rule gives, so the
job and the demo agree on what "current" means.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from .. import placeholders

PLACEHOLDERS: dict[str, str] = {
    "course_code": "the course's code (MATH261)",
    "course_title": "the course's title",
    "section_code": "the section's code (01)",
    "period": "the class period (sections.period; empty when none)",
    "teacher_first": "the lead teacher's first name (empty when none)",
    "teacher_last": "the lead teacher's last name (empty when none)",
    "term_code": "the term's code",
    "term_name": "the term's name",
}
"""The parts a section title may name, and what each is."""

DEFAULT = "{period} - {course_title} - {teacher_last}"
"""Period, course and teacher, as a course period reads on a K-12 schedule."""

TitleTemplate = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=placeholders.MAX_CHARS,
        description="the title of each section, from the placeholders "
        + ", ".join("{" + n + "}" for n in PLACEHOLDERS),
        extra_json_schema={"format": placeholders.format_of(PLACEHOLDERS)},
    ),
]
"""A parameter holding a section title template, checked when the job is saved."""


def compile_title(
    source: str, field: str = "param.title_template"
) -> tuple[placeholders.Piece, ...]:
    """The template's pieces; refused naming ``field`` and the accepted placeholders."""
    return placeholders.parse(source, PLACEHOLDERS, field)


def section_title(pieces: tuple[placeholders.Piece, ...], parts: dict[str, object]) -> str:
    """The title a section with these parts carries (a missing part renders empty)."""
    return placeholders.render(pieces, parts)
