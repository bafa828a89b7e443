"""The LMS sync log (``sis.lms_sync_log``): what each sync did to each record, for the people
who follow the sync (the Sync Notifier's mail) and for the pruning job that bounds it.

Rows carry the run's occurrence id; the unique key (occurrence, kind, SIS key, action) makes a
repeated occurrence log nothing twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from belltower.jobtypes import JobContext

INSERT_SQL = """
INSERT INTO sis.lms_sync_log (system, job_id, run_id, occurrence_id, kind, sis_key, lms_id, action, detail)
SELECT $1, $2, $3, $4, e.kind, e.sis_key, e.lms_id, e.action, e.detail
  FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
    AS e(kind, sis_key, lms_id, action, detail)
ON CONFLICT (occurrence_id, kind, sis_key, action) DO NOTHING
"""


@dataclass
class SyncLog:
    """Entries gathered while a sync runs; ``write`` stores them (call it as each kind ends)."""

    system: str
    entries: list[tuple[str, str, str | None, str, str]] = field(default_factory=list)
    written: int = 0

    def add(self, kind: str, key: str, action: str, lms_id: str | None = None,
            detail: str = "") -> None:  # fmt: skip
        self.entries.append((kind, key, lms_id, action, detail[:500]))

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((kind, action) for kind, _, _, action, _ in self.entries)

    async def write(self, conn: Any, ctx: JobContext) -> None:
        todo = self.entries[self.written :]
        if not todo:
            return
        cols = list(zip(*todo, strict=True))
        await conn.execute(
            INSERT_SQL, self.system, ctx.job_id, ctx.run_id, ctx.occurrence_id,
            list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4]),
        )  # fmt: skip
        self.written = len(self.entries)
