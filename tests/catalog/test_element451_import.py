"""Element451 Import against the SIS and a stand-in built to Element451's Web Data Export API: a
segment's users become prospects once, across pages of 50, throttling and a 503 ridden out,
a dry run, a refused token, and parameters refused when the job is saved."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from belltower.errors import InvalidInput
from belltower_dev.standins.element451 import Element451StandIn
from belltower_integration.importing import generated_sis_id
from belltower_integration.jobs import element451_import
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner

JOB = element451_import.job_type.name
SEGMENT = "school.segments.451"


@pytest.fixture
def element(monkeypatch: pytest.MonkeyPatch) -> Iterator[Element451StandIn]:
    with Element451StandIn(throttle_first=1) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_ELEMENT451_FEATURE", server.feature)
        for n in range(53):
            server.add_user(SEGMENT, f"6215{n:04d}", **{
                "user-email-address": f"prospect{n}@example.org", "user-first-name": f"Pat{n}",
                "user-last-name": "Prospect"})  # fmt: skip
        server.add_user(SEGMENT, "62159999", **{"user-email-address": "", "user-first-name": "No"})
        yield server


async def test_a_segment_becomes_prospects_once_across_pages(
    run_job: JobRunner, element: Element451StandIn
) -> None:
    element.fail_first = 1  # a 503 first, then a 429
    params = {"base_url": element.url, "segment": SEGMENT, "notify": ["admissions@example.edu"]}
    ran = await run_job(JOB, params, occurrence_id="occ-1")
    assert ran.status == "succeeded", ran.error
    assert ran.summary == "Element451 import: 53 created, 0 skipped, 1 refused"
    assert [r.get("last_id") for r in element.requests] == [None, "62150049"]
    assert all(
        r["per_page"] <= 50 and r["options"] == {"column_key": "slug"} for r in element.requests
    )
    pool = await run_job.db.pool()
    row = await pool.fetchrow(
        "SELECT p.first_name, p.last_name, p.status, x.value FROM sis.people p"
        " JOIN sis.person_external_ids x ON x.person_id = p.id AND x.system = 'element451'"
        " WHERE p.sis_id = $1", generated_sis_id("prospect7@example.org"))  # fmt: skip
    assert tuple(row) == ("Pat7", "Prospect", "prospect", "62150007")
    assert "user 62159999" in ran.text and "results sent to 1 recipient(s)" in ran.text
    assert element.feature not in ran.text

    people = await pool.fetchval("SELECT count(*) FROM sis.people")
    again = await run_job(JOB, params, occurrence_id="occ-1")
    assert again.summary == "Element451 import: 0 created, 53 skipped, 1 refused"
    assert await pool.fetchval("SELECT count(*) FROM sis.people") == people

    element.users["62150007"]["user-email-address"] = "pat.seven@example.org"  # changed there
    changed = await run_job(JOB, params, occurrence_id="occ-2")
    assert "user 62150007" in changed.text and "(by element451 id)" in changed.text
    assert await pool.fetchval("SELECT count(*) FROM sis.people") == people


async def test_a_dry_run_creates_no_one_and_a_refused_token_fails(
    run_job: JobRunner, element: Element451StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await run_job.db.pool()
    people = await pool.fetchval("SELECT count(*) FROM sis.people")
    params = {"base_url": element.url, "segment": SEGMENT, "dry_run": True, "max_users": 10}
    dry = await run_job(JOB, params)
    assert (
        dry.summary
        == "Element451 import (dry run, nothing created): 10 created, 0 skipped, 0 refused"
    )
    assert await pool.fetchval("SELECT count(*) FROM sis.people") == people
    monkeypatch.setenv("BELLTOWER_SECRET_ELEMENT451_FEATURE", "not-the-token")
    refused = await run_job(JOB, {"base_url": element.url, "segment": SEGMENT})
    assert refused.status == "failed"
    assert "Element451 refused the secret 'element451-feature'" in (refused.error or "")
    assert "not-the-token" not in (refused.error or "")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"base_url": "http://192.168.1.5", "segment": "s"}, "param.base_url"),
     ({"base_url": "https://x.api.451.io", "segment": "a/b"}, "param.segment"),
     ({"base_url": "https://x.api.451.io", "segment": "s", "feature_token_secret": "a b"},
      "param.feature_token_secret"),
     ({"base_url": "https://x.api.451.io", "segment": "s", "status": "king"}, "param.status")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(element451_import.job_type.info(), params)
    assert caught.value.field.startswith(field)
