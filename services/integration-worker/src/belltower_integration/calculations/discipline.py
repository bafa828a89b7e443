"""``calc.detentions_from_tardies`` (Focus's Create Detentions from Tardies) and
``calc.auto_withdraw`` (Focus's AutoWithdraw).

Detentions: each student's tardies in a term (all their classes, through today) are compared
with the tardy thresholds; each threshold reached gives one detention on ``sis.detentions``,
keyed by (job, student, term, threshold), so a re-run or a redelivered occurrence adds none and
a student who reaches the next threshold later gets the next detention then.

AutoWithdraw: an enrollment still ``enrolled`` in a section of a term in progress whose
attendance marks hold ``consecutive_absences`` absences in a row is withdrawn: status
``withdrawn``, ``withdrawn_on`` the day of the last of those absences, the section's seat freed
and the change logged in ``sis.schedule_changes`` (by ``belltower:<job id>``). A withdrawn
enrollment is not looked at again, so a re-run withdraws nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import msgspec

from belltower.jobtypes import JobContext, JobType
from belltower.sis.formulas import nth_consecutive, thresholds_met

from .common import SEED_001, CalcParams, Codes, Counts, Meta, Scope, each_school, terms_of

Threshold = Annotated[int, Meta(ge=1, le=1000)]


class DetentionParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    thresholds: Annotated[
        list[Threshold],
        Meta(
            min_length=1,
            max_length=50,
            description="tardies in a term at which a detention is added, one per threshold",
        ),
    ] = msgspec.field(default_factory=lambda: [3, 6, 9])
    terms: Annotated[
        Codes, Meta(description="term codes to review; empty: the terms in progress today")
    ] = []


class AutoWithdrawParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    consecutive_absences: Annotated[
        int,
        Meta(
            ge=2,
            le=60,
            description="absences in a row that withdraw the student (state rules: 5, 6 or 7)",
        ),
    ] = 6


async def run_detentions(ctx: JobContext, params: DetentionParams) -> None:
    thresholds = sorted(set(params.thresholds))

    async def work(scope: Scope) -> Counts:
        added = kept = students = 0
        for term in await terms_of(scope, params.terms):
            args: list[Any] = [term["id"], scope.today]
            tardies = await scope.conn.fetch(
                f"""SELECT a.person_id, count(*) AS tardies FROM sis.attendance a
                      JOIN sis.sections s ON s.id = a.section_id
                      JOIN sis.people p ON p.id = a.person_id
                     WHERE s.term_id = $1 AND a.meets_on <= $2 AND a.mark = 'tardy'
                       AND {scope.students(args)}
                     GROUP BY a.person_id""",
                *args,
            )
            for row in tardies:
                met = thresholds_met(row["tardies"], thresholds)
                students += bool(met)
                for t in met:
                    made = await scope.conn.fetchval(
                        """INSERT INTO sis.detentions (person_id, term_id, reason, tardies, assigned_on,
                                                       source_job_id, source_key, occurrence_id)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                           ON CONFLICT (source_job_id, source_key) DO NOTHING RETURNING id""",
                        row["person_id"], term["id"], f"{t} tardies in {term['code']}", row["tardies"],
                        scope.today, scope.job_id, f"tardies:{row['person_id']}:{term['id']}:{t}",
                        scope.occurrence_id,
                    )  # fmt: skip
                    added += made is not None
                    kept += made is None
        return {
            "detentions added": added,
            "already on the list": kept,
            "students at a threshold": students,
        }

    report = await each_school(ctx, params, "Detentions from tardies", work)
    report.notes.append("tardy thresholds: " + ", ".join(str(t) for t in thresholds))
    report.write(ctx)


async def run_withdraw(ctx: JobContext, params: AutoWithdrawParams) -> None:
    async def work(scope: Scope) -> Counts:
        args: list[Any] = [scope.today]
        rows = await scope.conn.fetch(
            f"""SELECT e.id AS enrollment_id, e.person_id, e.section_id, e.credits, s.term_id,
                       a.meets_on, a.mark
                  FROM sis.enrollments e
                  JOIN sis.sections s ON s.id = e.section_id
                  JOIN sis.terms t ON t.id = s.term_id
                  JOIN sis.people p ON p.id = e.person_id
                  JOIN sis.attendance a ON a.section_id = e.section_id AND a.person_id = e.person_id
                 WHERE e.status = 'enrolled' AND t.starts_on <= $1 AND t.ends_on >= $1
                   AND a.meets_on <= $1 AND {scope.students(args)}
                 ORDER BY e.id, a.meets_on""",
            *args,
        )
        marks: dict[int, list[tuple[Any, str]]] = defaultdict(list)
        info: dict[int, Any] = {}
        for r in rows:
            marks[r["enrollment_id"]].append((r["meets_on"], r["mark"]))
            info[r["enrollment_id"]] = r
        withdrawn = 0
        for eid, seq in marks.items():
            on = nth_consecutive(seq, params.consecutive_absences)
            if on is not None:
                await _withdraw(scope, info[eid], on)
                withdrawn += 1
        return {"enrollments withdrawn": withdrawn, "enrollments checked": len(marks)}

    report = await each_school(ctx, params, "AutoWithdraw", work)
    report.notes.append(f"withdrawn after {params.consecutive_absences} consecutive absences")
    report.write(ctx)


async def _withdraw(scope: Scope, e: Any, on: Any) -> None:
    conn = scope.conn
    before = await conn.fetchval(
        """SELECT coalesce(sum(e.credits), 0) FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
            WHERE e.person_id = $1 AND s.term_id = $2 AND e.status IN ('enrolled', 'completed')""",
        e["person_id"], e["term_id"],
    )  # fmt: skip
    await conn.execute(
        "UPDATE sis.enrollments SET status = 'withdrawn', withdrawn_on = $2, updated_at = now() WHERE id = $1",
        e["enrollment_id"], on,
    )  # fmt: skip
    await conn.execute(
        "UPDATE sis.sections SET enrolled = greatest(enrolled - 1, 0) WHERE id = $1",
        e["section_id"],
    )
    await conn.execute(
        """INSERT INTO sis.schedule_changes (person_id, section_id, term_id, action, credits,
                                             term_credits_before, term_credits_after, changed_by)
           VALUES ($1, $2, $3, 'withdraw', $4, $5, $6, $7)""",
        e["person_id"], e["section_id"], e["term_id"], e["credits"], before, before - e["credits"],
        f"belltower:{scope.job_id}",
    )  # fmt: skip


detentions_type = JobType(
    name="calc.detentions_from_tardies",
    pool="integration",
    title="Create Detentions from Tardies",
    description=(
        "Reviews the tardies entered for students against the tardy thresholds and adds a "
        "detention to the Detention List for each threshold met, once. From "
        + SEED_001
        + ": 'Create Detentions from Tardies'."
    ),
    params=DetentionParams,
    run=run_detentions,
)

auto_withdraw_type = JobType(
    name="calc.auto_withdraw",
    pool="integration",
    title="AutoWithdraw",
    description=(
        "Automatically withdraws students from a class after a set number (5, 6 or 7) of "
        "consecutive absences, as per state rules; limit it to the adult education school with "
        "divisions. From " + SEED_001 + ": 'AutoWithdraw (FPS)'."
    ),
    params=AutoWithdrawParams,
    run=run_withdraw,
)
