"""What the jobs that queue messages for students' families share: which guardians, and putting
messages in ``sis.communication_queue`` once.

Each message carries a ``source_key`` naming what it is about and for whom (``attendance:<student>:
<day>:guardian:<id>``); queueing the same key again is a no-op, so a redelivered or repeated run
queues nothing twice. The Communication Queue job sends them (quiet hours, opt-outs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from belltower import sis

Meta = msgspec.Meta


class GuardianParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which of a student's guardians are told. Only guardians the school may contact about the
    student (``student_guardians.contact_allowed``) ever are."""

    guardian_relationships: sis.GuardianRelationships = ("parent", "guardian")
    guardian_primary_only: Annotated[
        bool, Meta(description="only each student's primary contact (contact priority 1)")
    ] = False


@dataclass(frozen=True)
class Queued:
    channel: Literal["email", "sms"]
    to_address: str
    subject: str
    body_text: str
    source_key: str
    person_id: int | None = None
    guardian_id: int | None = None


async def enqueue(conn: sis.Executor, messages: list[Queued]) -> int:
    """Queue ``messages``, each once ever by its source key; returns how many were new."""
    if not messages:
        return 0
    rows = await conn.fetch(
        """INSERT INTO sis.communication_queue
                  (channel, to_address, subject, body_text, person_id, guardian_id, source_key)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                $6::bigint[], $7::text[])
           ON CONFLICT (source_key) DO NOTHING RETURNING id""",
        [m.channel for m in messages], [m.to_address for m in messages],
        [m.subject for m in messages], [m.body_text for m in messages],
        [m.person_id for m in messages], [m.guardian_id for m in messages],
        [m.source_key for m in messages],
    )  # fmt: skip
    return len(rows)
