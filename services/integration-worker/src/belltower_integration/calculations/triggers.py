"""``calc.attendance_triggers`` (Focus's Attendance Daily Triggers): attendance letters queued
when a student's absences in a term reach a trigger.

Two kinds of trigger: ``daily`` counts absent days (``sis.attendance_days``, from Recalculate
Daily Attendance), ``period`` counts absent class periods (``sis.attendance``). Letters can be
triggered by either but are generated daily: each run queues at most one letter per student and
trigger kind, for the highest threshold newly reached, as e-mails in ``sis.communication_queue``
(the Communication Queue job sends them) to the student's guardians and/or the student.

Every threshold reached is entered in ``sis.attendance_letters`` (job, student, term, trigger,
threshold) in the same transaction as the queued e-mails, so a re-run or a redelivered
occurrence queues no letter twice, and a student who reaches the next threshold gets the next.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from belltower import templates
from belltower.jobtypes import JobContext, JobType
from belltower.sis.formulas import thresholds_met

from .common import SEED_001, CalcParams, Codes, Counts, Meta, Scope, each_school, terms_of

Thresholds = Annotated[
    list[Annotated[int, Meta(ge=1, le=1000)]],
    Meta(
        max_length=20,
        description="absences at which a letter is queued; empty: this trigger is off",
    ),
]
SUBJECT = "Attendance notice for {{ student }}"
MESSAGE = (
    "{{ student }} has {{ count }} {{ 'absent days' if trigger == 'daily' else 'absent class periods' }} "
    "in {{ term }}, reaching the school's threshold of {{ threshold }}. Please contact the school."
)


class TriggerParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    daily_thresholds: Thresholds = msgspec.field(default_factory=lambda: [3, 5, 10])
    period_thresholds: Thresholds = []
    send_to: Annotated[
        Literal["guardians", "student", "both"],
        Meta(
            description="who gets the letter: the student's guardians (with an e-mail), the student, or both"
        ),
    ] = "guardians"
    terms: Annotated[
        Codes, Meta(description="term codes to check; empty: the terms in progress today")
    ] = []
    subject: Annotated[
        templates.TemplateText,
        Meta(
            description="subject (Jinja2: student, count, threshold, trigger, term); empty: the default"
        ),
    ] = ""
    message: Annotated[
        templates.TemplateText,
        Meta(
            description="letter text (Jinja2: student, count, threshold, trigger, term); empty: the default"
        ),
    ] = ""


COUNTS = {
    "daily": """SELECT p.id AS person_id, p.first_name || ' ' || p.last_name AS student, count(*) AS n
                  FROM sis.attendance_days d JOIN sis.people p ON p.id = d.person_id
                 WHERE d.status = 'absent' AND d.on_date BETWEEN $1 AND $2 AND {where}
                 GROUP BY p.id""",
    "period": """SELECT p.id AS person_id, p.first_name || ' ' || p.last_name AS student, count(*) AS n
                   FROM sis.attendance a JOIN sis.people p ON p.id = a.person_id
                   JOIN sis.sections s ON s.id = a.section_id
                  WHERE a.mark = 'absent' AND a.meets_on BETWEEN $1 AND $2 AND s.term_id = $3 AND {where}
                  GROUP BY p.id""",
}


async def _addresses(scope: Scope, person_id: int, send_to: str) -> list[str]:
    rows = await scope.conn.fetch(
        """SELECT g.email AS address FROM sis.student_guardians sg JOIN sis.guardians g ON g.id = sg.guardian_id
            WHERE sg.student_id = $1 AND g.email IS NOT NULL AND $2
           UNION
           SELECT address FROM sis.emails WHERE person_id = $1 AND is_primary AND $3""",
        person_id, send_to in ("guardians", "both"), send_to in ("student", "both"),
    )  # fmt: skip
    return sorted(r["address"] for r in rows)


async def _letter(
    scope: Scope, params: TriggerParams, term: Any, trigger: str, row: Any, new: list[int]
) -> tuple[int, bool]:
    """Enter the thresholds newly reached and queue one letter for the highest; returns the
    number of e-mails queued and whether the student had nobody to send to."""
    context = {
        "student": row["student"], "count": row["n"], "threshold": max(new),
        "trigger": trigger, "term": term["name"],
    }  # fmt: skip
    subject = templates.render(params.subject or SUBJECT, "param.subject", context).strip()
    body = templates.render(params.message or MESSAGE, "param.message", context).strip()
    queued = []
    addresses = await _addresses(scope, row["person_id"], params.send_to)
    for address in addresses:
        queue_id = await scope.conn.fetchval(
            """INSERT INTO sis.communication_queue (channel, person_id, to_address, subject, body_text)
               VALUES ('email', $1, $2, $3, $4) RETURNING id""",
            row["person_id"], address, subject[:300], body,
        )  # fmt: skip
        queued.append(queue_id)
    await scope.conn.executemany(
        """INSERT INTO sis.attendance_letters (job_id, person_id, term_id, trigger, threshold, count,
                                               queue_ids, occurrence_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        [(scope.job_id, row["person_id"], term["id"], trigger, t, row["n"], queued, scope.occurrence_id)
         for t in new],
    )  # fmt: skip
    return len(queued), not addresses


async def run(ctx: JobContext, params: TriggerParams) -> None:
    triggers = {"daily": params.daily_thresholds, "period": params.period_thresholds}

    async def work(scope: Scope) -> Counts:
        terms = await terms_of(scope, params.terms)
        letters = emails = nobody = 0
        for term in terms:
            for trigger, thresholds in triggers.items():
                if not thresholds:
                    continue
                args: list[Any] = [term["starts_on"], term["through_on"]]
                if trigger == "period":
                    args.append(term["id"])
                sql = COUNTS[trigger].format(where=scope.students(args))
                done = await _done(scope, term["id"], trigger)
                for row in await scope.conn.fetch(sql, *args):
                    new = [
                        t
                        for t in thresholds_met(row["n"], thresholds)
                        if (row["person_id"], t) not in done
                    ]
                    if not new:
                        continue
                    sent, none = await _letter(scope, params, term, trigger, row, new)
                    letters += 1
                    emails += sent
                    nobody += none
        return {"letters": letters, "e-mails queued": emails, "letters with no address": nobody}

    report = await each_school(ctx, params, "Attendance triggers", work)
    report.notes.append(
        f"daily thresholds {params.daily_thresholds or 'off'}, period thresholds "
        f"{params.period_thresholds or 'off'}; the Communication Queue job sends the letters"
    )
    report.write(ctx)


async def _done(scope: Scope, term_id: int, trigger: str) -> set[tuple[int, int]]:
    rows = await scope.conn.fetch(
        "SELECT person_id, threshold FROM sis.attendance_letters WHERE job_id = $1 AND term_id = $2 AND trigger = $3",
        scope.job_id, term_id, trigger,
    )  # fmt: skip
    return {(r["person_id"], r["threshold"]) for r in rows}


job_type = JobType(
    name="calc.attendance_triggers",
    pool="integration",
    title="Attendance Daily Triggers",
    description=(
        "Queues up attendance letters based on attendance triggers; can be daily or period alerts. "
        "Letters can be triggered by period or daily attendance, but letters are generated daily; "
        "the Communication Queue job sends them. From "
        + SEED_001
        + ": 'Attendance Daily Triggers'."
    ),
    params=TriggerParams,
    run=run,
)
