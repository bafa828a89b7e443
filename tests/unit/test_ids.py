"""Occurrence and run ids: the fast path must give exactly what ``uuid.uuid5`` gives.

The ids are persisted (ledger, history) and used for de-duplication (``Nats-Msg-Id``), so a
single differing character would dispatch an occurrence twice after an upgrade.
"""

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from belltower import events
from belltower.events import manual_occurrence_id, occurrence_id, run_id_for


def reference_occurrence_id(job_id: str, scheduled_for: datetime) -> str:
    instant = scheduled_for.astimezone(UTC).isoformat(timespec="microseconds")
    return str(uuid.uuid5(events._OCCURRENCE_NS, f"{job_id}|{instant}"))


def reference_run_id(occurrence: str) -> str:
    return str(uuid.uuid5(events._RUN_NS, occurrence))


def test_ids_match_uuid5_over_many_random_inputs() -> None:
    rng = random.Random(20300107)
    base = datetime(2000, 1, 1, tzinfo=UTC)
    for _ in range(20_000):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        offset = timezone(timedelta(minutes=rng.randint(-14 * 60, 14 * 60)))
        at = (base + timedelta(microseconds=rng.getrandbits(50))).astimezone(offset)
        occ = occurrence_id(job_id, at)
        assert occ == reference_occurrence_id(job_id, at)
        assert run_id_for(occ) == reference_run_id(occ)
        manual = manual_occurrence_id()
        assert run_id_for(manual) == reference_run_id(manual)


@settings(max_examples=500)
@given(st.text(), st.datetimes(timezones=st.timezones()))
def test_ids_match_uuid5_for_any_text(name: str, at: datetime) -> None:
    try:
        name.encode()
    except UnicodeEncodeError:  # lone surrogates: uuid5 refuses them too
        return
    assert run_id_for(name) == reference_run_id(name)
    assert occurrence_id(name, at) == reference_occurrence_id(name, at)


def test_ids_are_canonical_version_5_uuids() -> None:
    occ = occurrence_id("9b2f6c1e-0000-4000-8000-000000000000", datetime(2030, 1, 7, tzinfo=UTC))
    parsed = uuid.UUID(occ)
    assert str(parsed) == occ
    assert parsed.version == 5
    assert parsed.variant == uuid.RFC_4122
