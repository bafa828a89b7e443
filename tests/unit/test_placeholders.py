"""Placeholder texts (a section's title template): only the names given, rendered plainly."""

from __future__ import annotations

import pytest

from belltower import placeholders
from belltower.errors import InvalidInput
from belltower.sis import titles

NAMES = ("period", "course_title", "teacher_last")


def test_a_missing_part_renders_empty_and_leaves_no_dangling_separator() -> None:
    pieces = placeholders.parse("{period} - {course_title} - {teacher_last}", NAMES, "t")
    full = {"period": "3", "course_title": "Algebra  I", "teacher_last": "Okafor"}
    assert placeholders.render(pieces, full) == "3 - Algebra I - Okafor"
    assert placeholders.render(pieces, {**full, "period": None}) == "Algebra I - Okafor"
    assert placeholders.render(pieces, {**full, "teacher_last": None}) == "3 - Algebra I"


def test_values_are_inserted_as_text_never_formatted_again() -> None:
    pieces = placeholders.parse("{{x}} {course_title}", NAMES, "t")
    assert placeholders.render(pieces, {"course_title": "{period.__class__}"}) == (
        "{x} {period.__class__}"
    )


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{period.__class__}", "attribute or index access"),
        ("{period[0]}", "attribute or index access"),
        ("{period!s}", "conversion or format spec"),
        ("{period:{course_title}}", "conversion or format spec"),
        ("{}", "positional"),
        ("{room}", "not a placeholder"),
        ("}", "does not parse"),
        ("   ", "empty"),
        ("a\nb", "control character"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_anything_but_a_plain_accepted_name_is_refused(source: str, why: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        placeholders.parse(source, NAMES, "param.title_template")
    assert refused.value.field == "param.title_template"
    assert why in refused.value.reason
    assert "{period}, {course_title}, {teacher_last}" in (refused.value.accepted or "")


def test_the_default_section_title_is_focus_course_period_title() -> None:
    pieces = titles.compile_title(titles.DEFAULT)
    parts = {"period": "2", "course_title": "Biology", "teacher_last": "Reyes", "term_code": "X"}
    assert titles.section_title(pieces, parts) == "2 - Biology - Reyes"
