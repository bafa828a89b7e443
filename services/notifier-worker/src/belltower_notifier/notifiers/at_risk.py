"""At-Risk Alert: students whose retention score drops below a threshold.

The score (``belltower.sis.formulas.risk_score``, 0-100, higher is safer) weighs the student's
grades (the latest cumulative GPA on their academic record, from Calculate Class Rank and GPA),
their attendance in the current term (share of marked class meetings attended, tardies
included) and their active holds. Each student is told about once per term (``once_per_item``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from belltower.sis.formulas import risk_score

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import NAME, STUDENT_COLUMNS, Meta


class AtRiskParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADVISING"
    threshold: Annotated[
        int, Meta(ge=1, le=100, description="report students whose score (0-100) is below this")
    ] = 60
    dry_run: Annotated[
        bool, Meta(description="list the students and who would be told; send and record nothing")
    ] = False


async def _at_risk(q: Query[AtRiskParams]) -> list[Row]:
    args: list[Any] = [q.today]
    sql = f"""
        WITH current_term AS (
            SELECT id, code FROM sis.terms WHERE starts_on <= $1 AND ends_on >= $1
             ORDER BY starts_on DESC LIMIT 1)
        SELECT p.id AS person_id, {NAME}, t.id AS term_id, t.code AS term,
               (SELECT a.cumulative_gpa_unweighted FROM sis.academic_records a
                  JOIN sis.terms at ON at.id = a.term_id
                 WHERE a.person_id = p.id ORDER BY at.starts_on DESC LIMIT 1) AS gpa,
               (SELECT count(*) FILTER (WHERE m.mark IN ('present', 'tardy'))::numeric / nullif(count(*), 0)
                  FROM sis.attendance m JOIN sis.sections ms ON ms.id = m.section_id
                 WHERE m.person_id = p.id AND ms.term_id = t.id AND m.meets_on <= $1) AS attended,
               (SELECT count(*) FROM sis.holds h
                 WHERE h.person_id = p.id AND h.released_at IS NULL AND h.starts_on <= $1
                   AND (h.ends_on IS NULL OR h.ends_on >= $1)) AS holds
          FROM sis.people p CROSS JOIN current_term t
         WHERE {q.where(args)} AND EXISTS (
               SELECT 1 FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
                WHERE e.person_id = p.id AND s.term_id = t.id AND e.status = 'enrolled')
         ORDER BY name"""
    rows = []
    for record in await q.conn.fetch(sql, *args):
        v = dict(record)
        v["score"] = risk_score(v["gpa"], v["attended"], v["holds"])
        if v["score"] >= q.params.threshold:
            continue
        v["attended"] = (
            None if v["attended"] is None else f"{(v['attended'] * 100).quantize(Decimal('1'))}%"
        )
        rows.append(Row(person_id=v["person_id"], item=f"at_risk:{v['term_id']}", values=v))
    return rows


at_risk_alert = Notifier(
    name="notifier.at_risk_alert",
    title="Notifier: At-Risk Alert",
    description=(
        "The At-Risk Alert system is a retention ranking tool: each student is given a score based "
        "on their grades and attendance, adjusted by their holds, and the notification alerts "
        "administrators when a student drops below a certain threshold. From the SONIS Timed Task "
        "Scheduler (seed 000): 'Notifier: At-Risk Alert'. The notification can be limited by "
        "Division, Campus, Department, and/or Level."
    ),
    params=AtRiskParams,
    select=_at_risk,
    columns=(
        *STUDENT_COLUMNS,
        ("score", "Score"),
        ("gpa", "GPA"),
        ("attended", "Attended"),
        ("holds", "Holds"),
    ),
    subject="{{ count | counted('student') }} below the at-risk threshold",
    intro="These students' at-risk score (0-100: grades, attendance, holds) dropped below "
    "{{ params.threshold }}:",
    repeat="once_per_item",
)
