"""What Sync Recent Course Period Changes needs of the demo school: each section's class period
and the current term's gradebooks its teachers combined by period. Derived from rows already
drawn, with no draw of their own, so every other table keeps its rows."""

from __future__ import annotations

from collections import defaultdict

from .model import DemoData, Row

PERIODS = 7


def add_combined_gradebooks(data: DemoData) -> None:
    """Every section meets in one of seven periods. Where a teacher has two or more of the
    current term's sections in one period, they combined them into the first one's gradebook,
    all but the last section (as if it were imported afterwards: the job attaches it)."""
    columns, rows = data.tables["sections"]
    col = {c: i for i, c in enumerate(columns)}
    with_period: list[Row] = [(*r, str(1 + r[col["id"]] % PERIODS)) for r in rows]
    data.add("sections", [*columns, "period"], with_period)
    term_cols, terms = data.tables["terms"]
    t = {c: i for i, c in enumerate(term_cols)}
    current = {r[t["id"]] for r in terms if r[t["starts_on"]] <= data.today <= r[t["ends_on"]]}
    groups: dict[tuple[int, int, str], list[int]] = defaultdict(list)
    for r in with_period:
        if r[col["term_id"]] in current and r[col["lead_faculty_id"]] is not None:
            groups[(r[col["term_id"]], r[col["lead_faculty_id"]], r[-1])].append(r[col["id"]])
    books: list[Row] = []
    members: list[Row] = []
    for (term, faculty, period), ids in sorted(groups.items()):
        if len(ids) < 2:
            continue
        ids.sort()
        books.append((len(books) + 1, term, faculty, period, ids[0]))
        members += [(len(books), s) for s in ids[:-1]]
    data.add(
        "combined_gradebooks",
        ["id", "term_id", "faculty_id", "period", "primary_section_id"],
        books,
    )
    data.add("combined_gradebook_sections", ["gradebook_id", "section_id"], members)
