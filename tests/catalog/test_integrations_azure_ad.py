"""Azure AD SAMAccountName Update against the demo school and a stand-in built to Microsoft
Graph's contract: cloud-only users get the SIS login id as mailNickname and the SIS id as
employeeId; users synced from on-premises AD, whose onPremisesSamAccountName is read-only
through Graph, are reported when it differs; an unknown user fails alone and is tried again;
a repeat of the occurrence changes nothing; the results are mailed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from belltower.errors import InvalidInput
from belltower_dev.localservers import MailSink
from belltower_dev.standins.graph import GraphStandIn
from belltower_integration.jobs import azure_ad
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner, mails_to

NAME = azure_ad.job_type.name
DOMAIN = "students.contoso.edu"


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphStandIn]:
    with GraphStandIn(throttle_first=1, expire_tokens=True) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_AZURE_AD_CLIENT_SECRET", server.secret)
        yield server


async def test_cloud_accounts_are_updated_and_on_premises_ones_reported(
    run_job: JobRunner, graph: GraphStandIn, mail_sink: MailSink
) -> None:
    pool = await run_job.db.pool()
    people = await pool.fetch(
        "SELECT id, sis_id, login_id FROM sis.people WHERE login_id IS NOT NULL AND status = 'faculty' ORDER BY id LIMIT 4"
    )
    await pool.execute(
        "UPDATE sis.people SET status = 'alumni' WHERE login_id IS NOT NULL AND status <> 'faculty'"
    )
    await pool.execute("UPDATE sis.people SET status = 'alumni' WHERE status = 'faculty' AND id <> ALL($1::bigint[])",
                       [p["id"] for p in people])  # fmt: skip
    cloud = graph.add_user(f"{people[0]['login_id']}@{DOMAIN}", mailNickname="old-name")
    synced_ok = graph.add_user(f"{people[1]['login_id']}@{DOMAIN}", onPremisesSyncEnabled=True,
                               onPremisesSamAccountName=people[1]["login_id"].upper())  # fmt: skip
    synced_off = graph.add_user(f"{people[2]['login_id']}@{DOMAIN}", onPremisesSyncEnabled=True,
                                onPremisesSamAccountName="jdoe-legacy")  # fmt: skip
    # people[3] has no Entra account yet
    params = {"tenant_id": graph.tenant, "client_id": graph.client_id, "upn_domain": DOMAIN,
              "statuses": ["faculty"], "graph_url": graph.url, "login_url": graph.url, "notify": ["it@school.test"]}  # fmt: skip

    first = await run_job(NAME, params, occurrence_id="occ-1")
    assert first.status == "failed" and "1 account(s) could not be read" in (first.error or "")
    assert (
        cloud["mailNickname"] == people[0]["login_id"]
        and cloud["employeeId"] == people[0]["sis_id"]
    )
    assert (
        synced_off["onPremisesSamAccountName"] == "jdoe-legacy"
    )  # read-only through Graph: reported, not set
    assert "'jdoe-legacy'" in first.text and "read-only through Graph" in first.text
    assert f"no Entra user {people[3]['login_id']}@{DOMAIN}" in first.text
    assert (
        first.summary
        == "Azure AD SAMAccountName Update: updated 1, 1 to change on-premises, 1 failed"
    )
    assert not [p for m, p in graph.requests if m == "PATCH" and synced_ok["id"] in p]
    assert graph.secret not in first.text
    # a 429 ridden out, and an expired token fetched again once
    assert (
        graph.throttle_first == 0
        and graph.requests.count(("POST", f"/{graph.tenant}/oauth2/v2.0/token")) == 2
    )
    (mail,) = mails_to(mail_sink, "it@school.test")
    assert "Azure AD SAMAccountName Update" in mail["Subject"]
    linked = await pool.fetchval(
        "SELECT value FROM sis.person_external_ids WHERE person_id = $1 AND system = 'azure_ad'",
        people[0]["id"],
    )
    assert linked == cloud["id"]

    patches = [r for r in graph.requests if r[0] == "PATCH"]
    again = await run_job(NAME, params, occurrence_id="occ-1")
    assert [r for r in graph.requests if r[0] == "PATCH"] == patches  # nothing changed twice
    assert "updated 0 cloud account(s)" in again.text and "jdoe-legacy" in again.text

    graph.add_user(f"{people[3]['login_id']}@{DOMAIN}")
    synced_off["onPremisesSamAccountName"] = people[2][
        "login_id"
    ]  # fixed in on-premises AD, synced up
    later = await run_job(NAME, params, occurrence_id="occ-2")
    assert later.status == "succeeded", later.error
    assert (
        later.summary
        == "Azure AD SAMAccountName Update: updated 1, 0 to change on-premises, 0 failed"
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [({"tenant_id": "not a tenant", "client_id": "11111111-2222-3333-4444-555555555555"}, "param.tenant_id"),
     ({"tenant_id": "contoso.edu", "client_id": "abc"}, "param.client_id"),
     ({"tenant_id": "contoso.edu", "client_id": "11111111-2222-3333-4444-555555555555", "client_secret": "../x"}, "param.client_secret"),
     ({"tenant_id": "contoso.edu", "client_id": "11111111-2222-3333-4444-555555555555", "graph_url": "http://10.0.0.1/"}, "param.graph_url"),
     ({"tenant_id": "contoso.edu", "client_id": "11111111-2222-3333-4444-555555555555", "upn_domain": "x y"}, "param.upn_domain")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(azure_ad.job_type.info(), params)
    assert caught.value.field.startswith(field)
