"""``finance.district_template_fees``: Focus's Automatic Application of District Template Fees
(FPS) (seed 001).

Once the district has pushed its fee templates out (``sis.erp_fee_templates.pushed_at``), a
program a school builds afterwards (``sis.erp_programs``) is missing them: the job assigns every
pushed template to every program of the school that lacks it, at the template's amount
(``sis.erp_program_fees``, assigned by 'scheduled job'). A program that has a template keeps it
as it is (a school may have changed the amount). One transaction per school; assignments are
unique per program and template, so a re-run changes nothing; ``dry_run`` reports and rolls back.
"""

from __future__ import annotations

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Scope, each_school


class TemplateFeeParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    """``levels`` does not apply (programs are a school's, not a student's) and is ignored."""


async def _assign(scope: Scope) -> Counts:
    row = await scope.conn.fetchrow(
        """WITH missing AS (
               SELECT pr.id AS program_id, t.id AS template_id, t.amount
                 FROM sis.erp_programs pr CROSS JOIN sis.erp_fee_templates t
                WHERE pr.division_id = $1 AND t.pushed_at IS NOT NULL AND t.pushed_at <= now()
                  AND NOT EXISTS (SELECT 1 FROM sis.erp_program_fees f
                                   WHERE f.program_id = pr.id AND f.template_id = t.id)),
           added AS (
               INSERT INTO sis.erp_program_fees (program_id, template_id, amount, assigned_by, occurrence_id)
               SELECT program_id, template_id, amount, 'scheduled job', $2 FROM missing
               ON CONFLICT DO NOTHING
               RETURNING program_id)
           SELECT (SELECT count(*) FROM added) AS added,
                  (SELECT count(DISTINCT program_id) FROM added) AS programs""",
        scope.division_id, scope.occurrence_id,
    )  # fmt: skip
    return {"template fees assigned": row["added"], "programs": row["programs"]}


async def run(ctx: JobContext, params: TemplateFeeParams) -> None:
    (await each_school(ctx, params, "District template fees", _assign)).write(ctx)


job_type = JobType(
    name="finance.district_template_fees",
    pool="integration",
    title="Automatic Application of District Template Fees (FPS)",
    description=(
        "Assigns the district's pushed fee templates to the programs a school built after the "
        "templates were pushed out. From " + SEED_001 + ": 'Automatic Application of District "
        "Template Fees (FPS)'."
    ),
    params=TemplateFeeParams,
    run=run,
)
