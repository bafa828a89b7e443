"""Finding employees for the HR and payroll imports: people matched by their HR number
(``person_external_ids`` system ``hr``, the EIN of the seeds)."""

from __future__ import annotations

from typing import Any

HR_SYSTEM = "hr"


async def by_ein(conn: Any, eins: list[str], system: str = HR_SYSTEM) -> dict[str, int]:
    """Person ids by HR number, for those of ``eins`` that exist."""
    rows = await conn.fetch(
        "SELECT value, person_id FROM sis.person_external_ids WHERE system = $1 AND value = ANY($2::text[])",
        system,
        sorted(set(eins)),
    )
    return {r["value"]: r["person_id"] for r in rows}
