"""``calc.class_rank_gpa`` (Focus's Calculate Class Rank and GPA) and ``calc.gpa_reset`` (SONIS's
GPA Reset): each student's term and cumulative GPAs, credits and class rank, written to
``sis.academic_records`` (after Ed-Fi's StudentAcademicRecord).

Grades count when final (``final_posted``) and, by default, official; their letters' points come
from ``sis.grade_scale`` (a letter not on it is left out and counted in the output). The weighted
GPA adds the course's ``gpa_weight`` to a passing grade's points. Cumulative values take every
term up to and including the record's term, in term order. The class is the students of the same
school (division) and level with a record for the term; they are ranked on the cumulative GPA
(weighted or unweighted, by parameter or the school preference ``class_rank_basis``) with
standard competition ranking ("1224": equal GPAs share the best rank, the next rank skips).

A record is written only when a value differs from the stored one, so a re-run (or a redelivered
occurrence) changes nothing; records of the calculated terms whose grades are gone are removed.
GPA Reset deletes every record of the school's students first and rebuilds them all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from belltower.jobtypes import JobContext, JobType
from belltower.sis.formulas import Gpa, Graded, competition_ranks, gpa, percentile

from .common import (
    SEED_000,
    SEED_001,
    CalcParams,
    Codes,
    Counts,
    Meta,
    Scope,
    codes_to_ids,
    each_school,
    preference,
    sync_rows,
)

RankBasis = Literal["school_preference", "weighted", "unweighted"]

VALUE_COLUMNS = (
    "session_attempted_credits", "session_earned_credits", "session_gpa_credits",
    "session_gpa_unweighted", "session_gpa_weighted", "cumulative_attempted_credits",
    "cumulative_earned_credits", "cumulative_gpa_credits", "cumulative_gpa_unweighted",
    "cumulative_gpa_weighted", "class_rank", "class_size", "class_percentile", "rank_basis",
)  # fmt: skip


class GpaParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    terms: Annotated[
        Codes, Meta(description="term codes whose records are written; empty: every term graded")
    ] = []
    official_only: Annotated[
        bool,
        Meta(description="count only official grades (SONIS 'official'); false: every final one"),
    ] = True
    rank_by: Annotated[
        RankBasis,
        Meta(
            description="rank on the weighted or unweighted cumulative GPA; school_preference: the "
            "school preference class_rank_basis (weighted when unset)"
        ),
    ] = "school_preference"


class GpaResetParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    official_only: Annotated[
        bool, Meta(description="count only official grades; false: every final one")
    ] = True
    rank_by: RankBasis = "school_preference"


@dataclass(frozen=True, slots=True)
class Record:
    person_id: int
    term_id: int
    level_id: int | None
    session: Gpa
    cumulative: Gpa
    rank: int | None = None
    size: int | None = None
    pct: Decimal | None = None

    def values(self, basis: str) -> tuple[Any, ...]:
        s, c = self.session, self.cumulative
        return (
            s.attempted, s.earned, s.gpa_credits, s.unweighted, s.weighted,
            c.attempted, c.earned, c.gpa_credits, c.unweighted, c.weighted,
            self.rank, self.size, self.pct, basis if self.rank is not None else None,
        )  # fmt: skip


async def _graded(scope: Scope, official_only: bool) -> tuple[list[Any], int]:
    args: list[Any] = [official_only, scope.today]
    where = scope.students(args)
    rows = await scope.conn.fetch(
        f"""SELECT e.person_id, p.level_id, s.term_id, t.starts_on, e.credits, gs.points,
                   gs.earns_credit, c.gpa_weight, gs.grade IS NULL AS off_scale,
                   coalesce(gs.attempted, false) AS attempted
              FROM sis.grades g
              JOIN sis.enrollments e ON e.id = g.enrollment_id
              JOIN sis.people p ON p.id = e.person_id
              JOIN sis.sections s ON s.id = e.section_id
              JOIN sis.courses c ON c.id = s.course_id
              JOIN sis.terms t ON t.id = s.term_id
              LEFT JOIN sis.grade_scale gs ON gs.grade = g.grade
             WHERE g.final_posted AND g.grade IS NOT NULL AND (g.is_official OR NOT $1)
               AND e.status <> 'audit' AND t.starts_on <= $2 AND {where}
             ORDER BY e.person_id, t.starts_on, s.term_id""",
        *args,
    )
    off_scale = sum(1 for r in rows if r["off_scale"])
    return [r for r in rows if r["attempted"]], off_scale


def build_records(rows: list[Any]) -> list[Record]:
    """Each student's record for each term they have grades in, session and cumulative."""
    by_person: dict[int, dict[int, list[Graded]]] = defaultdict(lambda: defaultdict(list))
    level: dict[int, int | None] = {}
    for r in rows:  # ordered by person, term start
        by_person[r["person_id"]][r["term_id"]].append(
            Graded(r["credits"], r["points"], r["gpa_weight"], r["earns_credit"])
        )
        level[r["person_id"]] = r["level_id"]
    out = []
    for person, terms in by_person.items():
        so_far: list[Graded] = []
        for term, courses in terms.items():
            so_far.extend(courses)
            out.append(Record(person, term, level[person], gpa(courses), gpa(so_far)))
    return out


def rank_records(records: list[Record], basis: str) -> list[Record]:
    """Class rank within (term, level) on the cumulative GPA of ``basis``."""
    classes: dict[tuple[int, int | None], list[Record]] = defaultdict(list)
    for rec in records:
        classes[(rec.term_id, rec.level_id)].append(rec)
    out = []
    for members in classes.values():
        key = "weighted" if basis == "weighted" else "unweighted"
        ranks = competition_ranks({m.person_id: getattr(m.cumulative, key) for m in members})
        size = len(ranks)
        for m in members:
            rank = ranks.get(m.person_id)
            pct = percentile(rank, size) if rank is not None else None
            out.append(
                Record(
                    m.person_id,
                    m.term_id,
                    m.level_id,
                    m.session,
                    m.cumulative,
                    rank,
                    size if rank is not None else None,
                    pct,
                )
            )
    return out


async def _basis(scope: Scope, rank_by: RankBasis) -> str:
    if rank_by != "school_preference":
        return rank_by
    value = await preference(scope.conn, "class_rank_basis", "weighted")
    return value if value in ("weighted", "unweighted") else "weighted"


async def _write(scope: Scope, records: list[Record], basis: str, term_ids: list[int]) -> Counts:
    """Upsert the records that differ from the stored ones; remove the scope's stale ones."""
    if term_ids:
        records = [r for r in records if r.term_id in term_ids]
    args: list[Any] = [term_ids]
    where = scope.students(args)
    stored = {
        (r["person_id"], r["term_id"]): tuple(r[c] for c in VALUE_COLUMNS)
        for r in await scope.conn.fetch(
            f"""SELECT a.* FROM sis.academic_records a JOIN sis.people p ON p.id = a.person_id
                 WHERE (cardinality($1::bigint[]) = 0 OR a.term_id = ANY($1::bigint[])) AND {where}""",
            *args,
        )
    }
    computed = {(r.person_id, r.term_id): r.values(basis) for r in records}
    return await sync_rows(
        scope.conn, "academic_records", ("person_id", "term_id"), VALUE_COLUMNS, computed, stored,
        stamp={"occurrence_id": scope.occurrence_id},
    )  # fmt: skip


async def _calculate(
    scope: Scope, params: GpaParams | GpaResetParams
) -> tuple[list[Record], str, int]:
    rows, off_scale = await _graded(scope, params.official_only)
    basis = await _basis(scope, params.rank_by)
    return rank_records(build_records(rows), basis), basis, off_scale


async def run_gpa(ctx: JobContext, params: GpaParams) -> None:
    async def work(scope: Scope) -> Counts:
        term_ids = await codes_to_ids(scope.conn, "terms", "terms", params.terms)
        records, basis, off_scale = await _calculate(scope, params)
        counts = await _write(scope, records, basis, term_ids)
        counts["students"] = len({r.person_id for r in records})
        counts["grades not on the scale"] = off_scale
        return counts

    report = await each_school(ctx, params, "Class rank and GPA", work)
    report.notes.append(
        "ranks are standard competition ranks (1224) within school, level and term, on the cumulative GPA"
    )
    report.write(ctx)


async def run_reset(ctx: JobContext, params: GpaResetParams) -> None:
    async def work(scope: Scope) -> Counts:
        args: list[Any] = [scope.occurrence_id]
        where = scope.students(args)
        done = await scope.conn.fetchrow(
            f"""SELECT count(*) FILTER (WHERE a.occurrence_id = $1) AS ours,
                      count(*) FILTER (WHERE a.occurrence_id IS DISTINCT FROM $1) AS others
                 FROM sis.academic_records a JOIN sis.people p ON p.id = a.person_id WHERE {where}""",
            *args,
        )
        if done["ours"] and not done["others"]:
            # This occurrence has already rebuilt the school (a redelivery): rebuild nothing twice.
            return {"records deleted": 0, "records rebuilt": 0, "already rebuilt": done["ours"]}
        args = []
        deleted = await scope.conn.fetchval(
            f"""WITH gone AS (DELETE FROM sis.academic_records a USING sis.people p
                 WHERE p.id = a.person_id AND {scope.students(args)} RETURNING 1)
                SELECT count(*) FROM gone""",
            *args,
        )
        records, basis, off_scale = await _calculate(scope, params)
        counts = await _write(scope, records, basis, [])
        return {
            "records deleted": deleted,
            "records rebuilt": counts["added"],
            "grades not on the scale": off_scale,
        }

    report = await each_school(ctx, params, "GPA reset", work)
    report.write(ctx)


class_rank_gpa_type = JobType(
    name="calc.class_rank_gpa",
    pool="integration",
    title="Calculate Class Rank and GPA",
    description=(
        "Calculates each student's term and cumulative GPA (weighted and unweighted), credits "
        "and class rank (competition ranking, 1224, within school, level and term) from final "
        "grades and writes them to the student's academic record. From " + SEED_001 + ": "
        "'Calculate Class Rank and GPA'."
    ),
    params=GpaParams,
    run=run_gpa,
)

gpa_reset_type = JobType(
    name="calc.gpa_reset",
    pool="integration",
    title="Notifier: GPA Reset",
    description=(
        "Deletes and rebuilds the GPA table (the students' academic records, GPAs and ranks) on a "
        "regular interval to eliminate potential errors. From "
        + SEED_000
        + ": 'Notifier: GPA Reset'."
    ),
    params=GpaResetParams,
    run=run_reset,
)
