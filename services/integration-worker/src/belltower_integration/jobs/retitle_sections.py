"""``housekeeping.retitle_sections``: Focus's Retitle Sections (seed 001), "renames sections that
were changed via Run Query".

A section's display title (``sis.sections.title``, migration 0064) is stored, made from its
parts: the course's code and title, the section code, the class period, the lead teacher and the
term. An edit made straight in the database (Focus's Run Query: a course retitled, a period or a
teacher changed) leaves it stale. The job recomputes every title of the terms chosen from the
title template and writes those that differ, so it needs no record of what was edited, and a
re-run changes nothing. The template names only fixed placeholders (``belltower.sis.titles``),
checked when the job is saved: it is data, never ``str.format`` or Jinja. One transaction per
school (the section's division); ``dry_run`` lists what would change and writes nothing.
"""

from __future__ import annotations

from typing import Annotated

from belltower.jobtypes import JobContext, JobType
from belltower.sis import titles

from ..calculations.common import (
    SEED_001,
    CalcParams,
    Codes,
    Counts,
    Meta,
    Scope,
    codes_to_ids,
    each_school,
)
from ..report import ChangeList


class RetitleParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    """``levels`` does not apply (a section is a school's, not a student's) and is ignored."""

    title_template: titles.TitleTemplate = titles.DEFAULT
    terms: Annotated[
        Codes, Meta(description="term codes whose sections to retitle; empty: terms not yet ended")
    ] = []


_SECTIONS = """
    SELECT s.id, s.title, c.code AS course_code, c.title AS course_title, s.section_code,
           s.period, p.first_name AS teacher_first, p.last_name AS teacher_last,
           t.code AS term_code, t.name AS term_name
      FROM sis.sections s
      JOIN sis.courses c ON c.id = s.course_id
      JOIN sis.terms t ON t.id = s.term_id
      LEFT JOIN sis.people p ON p.id = s.lead_faculty_id
     WHERE s.division_id = $1
       AND CASE WHEN cardinality($2::bigint[]) = 0 THEN t.ends_on >= $3 ELSE t.id = ANY($2::bigint[]) END
     ORDER BY t.starts_on, c.code, s.section_code, s.id
       FOR UPDATE OF s"""

_WRITE = """
    UPDATE sis.sections s SET title = u.title
      FROM unnest($1::bigint[], $2::text[]) AS u(id, title)
     WHERE s.id = u.id AND s.title IS DISTINCT FROM u.title"""


async def run(ctx: JobContext, params: RetitleParams) -> None:
    pieces = titles.compile_title(params.title_template)
    changes = ChangeList(
        "Titles that would change (dry run)" if params.dry_run else "Titles changed"
    )

    async def retitle(scope: Scope) -> Counts:
        terms = await codes_to_ids(scope.conn, "terms", "terms", params.terms)
        stale: list[tuple[int, str]] = []
        rows = await scope.conn.fetch(_SECTIONS, scope.division_id, terms, scope.today)
        for row in rows:
            title = titles.section_title(pieces, dict(row))
            if title != row["title"]:
                stale.append((row["id"], title))
                record = f"{row['course_code']}-{row['section_code']} {row['term_code']}"
                was = "(none)" if row["title"] is None else f'"{row["title"]}"'
                changes.add(scope.code, record, was, f'"{title}"')
        if stale:
            await scope.conn.execute(_WRITE, [i for i, _ in stale], [t for _, t in stale])
        return {"sections retitled": len(stale), "unchanged": len(rows) - len(stale)}

    report = await each_school(ctx, params, "Retitle sections", retitle)
    report.notes.append(f"title template: {params.title_template}")
    report.write(ctx)
    changes.write(ctx)


job_type = JobType(
    name="housekeeping.retitle_sections",
    pool="integration",
    title="Retitle Sections",
    description=(
        "Recomputes each section's stored title from its course, section code, period, lead "
        "teacher and term by a title template, and renames the sections whose title no longer "
        "matches (after edits made straight in the database). From " + SEED_001 + ": "
        "'Retitle Sections'."
    ),
    params=RetitleParams,
    run=run,
)
