"""The OneRoster 1.2 provider as an LMS uses it: a consumer gets an OAuth 2 token from the console
with the client an admin issued, walks every collection page by page over HTTP, and gets the same
records the REST push builds from the demo school (read by the integration worker over real
NATS from the real PostgreSQL); filters, sorts and field selections; and the binding's refusals
(400 imsx_StatusInfo naming the parameter, 401 without or with a bad token, 403 for a scope that
does not cover the reads, 404 for an unknown sourcedId)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from belltower.jobtypes import Database
from belltower.settings import Settings
from belltower.worker import Worker
from belltower_console.app import create_app
from belltower_console.settings import ConsoleSettings
from belltower_integration.jobs import registry
from belltower_integration.jobs.oneroster_export import read_snapshot
from belltower_integration.oneroster import provider, rest
from belltower_integration.oneroster.provider import RosterProvider
from tests.helpers.console import ADMIN

BASE = "http://lms-test"
PATH = "/ims/oneroster/rostering/v1p2"
CORE = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly"
DEMOGRAPHICS = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-demographics.readonly"
VIEWS = {"schools": "orgs", "terms": "academicSessions", "students": "users", "teachers": "users"}
"""The envelope of each view: the collection it is a view of."""


@dataclass
class Lms:
    """A small OneRoster consumer: an HTTP client, the client credentials the admin issued and
    the admin's session (for the audit log)."""

    http: httpx.AsyncClient
    client_id: str
    client_secret: str
    admin: dict[str, str]
    database_url: str

    async def token(self, scope: str = CORE, secret: str | None = None) -> httpx.Response:
        return await self.http.post(
            "/ims/oneroster/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(self.client_id, secret or self.client_secret),
        )

    async def bearer(self, scope: str = CORE) -> dict[str, str]:
        got = await self.token(scope)
        assert got.status_code == 200, got.text
        assert got.json()["token_type"] == "bearer" and got.json()["scope"] == scope
        return {"Authorization": f"Bearer {got.json()['access_token']}"}

    async def walk(self, path: str, headers: dict[str, str], **params: str) -> list[Any]:
        """Every record of a collection, following the Link header's next page."""
        last = path.rsplit("/", 1)[-1]
        envelope = VIEWS.get(last, last)
        url: str | None = f"{PATH}/{path}"
        got: list[Any] = []
        total = None
        first: dict[str, str] | None = params
        while url:
            page = await self.http.get(url, params=first, headers=headers)
            first = None
            assert page.status_code == 200, page.text
            assert list(page.json()) == [envelope]
            total = int(page.headers["X-Total-Count"])
            got += page.json()[envelope]
            links = dict(
                (rel, target)
                for target, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', page.headers["Link"])
            )
            assert {"first", "last"} <= set(links)
            url = links.get("next")
        assert total == len(got)
        return got


@pytest.fixture
async def lms(fresh_nats, sis_database: str) -> AsyncIterator[Lms]:
    """The integration worker (as it starts, answering its operations; not consuming) and the
    console in this process, over the test's NATS and the demo school's database."""
    settings = Settings(nats_url=fresh_nats.url, database_url=sis_database)
    worker = Worker("integration", registry, settings, answers=RosterProvider)
    await worker.on_startup()
    await worker.broker.start()
    app = create_app(
        ConsoleSettings(
            nats_url=fresh_nats.url, database_url=sis_database,
            console_admin_user=ADMIN[0], console_admin_password=ADMIN[1],
        )
    )  # fmt: skip
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
        ):
            login = await http.post(
                "/api/v1/login", json={"username": ADMIN[0], "password": ADMIN[1]}
            )
            admin = {"X-CSRF-Token": login.json()["csrf_token"]}
            made = await http.post(
                "/api/v1/tokens", json={"name": "oneroster: Test LMS"}, headers=admin
            )
            assert made.status_code == 201, made.text
            yield Lms(http, made.json()["id"], made.json()["token"], admin, sis_database)
    finally:
        await worker.on_shutdown()
        await worker.broker.stop()


async def pushed(database_url: str) -> dict[str, dict[str, Any]]:
    """What the REST push would send of the demo school now (its shapes, the provider's href)."""
    db = Database(database_url)
    try:
        records = await read_snapshot(
            await db.pool(), datetime.now(UTC).date(), [], 30, "institution", "",
            demographics=False, guardians=False,
        )  # fmt: skip
    finally:
        await db.close()
    return rest.Shaper(BASE).records(records)


async def test_an_lms_walks_every_collection_and_gets_what_the_push_builds(
    lms: Lms, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replies of a few records each: the console fills each page from several of them.
    monkeypatch.setattr(provider, "ROSTER_REPLY_BYTES", 4_000)
    auth = await lms.bearer()
    expected = await pushed(lms.database_url)
    walked = {}
    for collection in rest.ORDER:
        records = await lms.walk(collection, auth, limit="40")
        ids = [r["sourcedId"] for r in records]
        assert ids == sorted(expected[collection]), collection  # each once, in sourcedId order
        for r in records:
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r.pop("dateLastModified")
            )
            assert r == expected[collection][r["sourcedId"]], (collection, r["sourcedId"])
        walked[collection] = records
    assert len(walked["users"]) > 40 and walked["enrollments"]

    # the views, as the binding defines them
    schools = await lms.walk("schools", auth)
    assert {o["sourcedId"] for o in schools} == {
        o["sourcedId"] for o in walked["orgs"] if o["type"] == "school"
    }
    terms = await lms.walk("terms", auth)
    assert {t["sourcedId"] for t in terms} == set(expected["academicSessions"])
    students = {u["sourcedId"] for u in await lms.walk("students", auth, limit="1000")}
    teachers = {u["sourcedId"] for u in await lms.walk("teachers", auth, limit="1000")}
    by_role = {
        role: {e["user"]["sourcedId"] for e in walked["enrollments"] if e["role"] == role}
        for role in ("student", "teacher")
    }
    assert students == by_role["student"] and teachers == by_role["teacher"]
    enrollment = next(e for e in walked["enrollments"] if e["role"] == "student")
    class_id = enrollment["class"]["sourcedId"]
    in_class = await lms.walk(f"classes/{class_id}/students", auth)
    assert {u["sourcedId"] for u in in_class} == {
        e["user"]["sourcedId"]
        for e in walked["enrollments"]
        if e["class"]["sourcedId"] == class_id and e["role"] == "student"
    }

    # one record, and its GUIDRefs lead to the provider's own records
    one = await lms.http.get(f"{PATH}/users/{enrollment['user']['sourcedId']}", headers=auth)
    assert one.status_code == 200 and list(one.json()) == ["user"]
    school = await lms.http.get(enrollment["school"]["href"], headers=auth)
    assert school.json()["org"]["sourcedId"] == enrollment["school"]["sourcedId"]
    assert (await lms.http.get(f"{PATH}/schools/institution", headers=auth)).status_code == 404
    term = next(iter(expected["academicSessions"]))
    got = await lms.http.get(f"{PATH}/terms/{term}", headers=auth)
    assert list(got.json()) == ["academicSession"]

    # every token issued is in the audit log
    audit = await lms.http.get(
        "/api/v1/audit", params={"action": "oneroster.token"}, headers=lms.admin
    )
    issued = [e for e in audit.json()["items"] if e["outcome"] == "ok"]
    assert issued and all(e["target"] == lms.client_id for e in issued)


async def test_filters_sorts_and_field_selections(lms: Lms) -> None:
    auth = await lms.bearer()
    users = await lms.walk("users", auth, limit="1000")
    name = sorted(users, key=lambda u: u["sourcedId"])[0]["familyName"]

    same = await lms.walk("users", auth, filter=f"familyName='{name}'")
    assert same and all(u["familyName"] == name for u in same)
    assert len(same) == sum(u["familyName"] == name for u in users)

    part = name[1:3].upper()
    either = await lms.walk(
        "users", auth, filter=f"familyName~'{part}' OR givenName>='X' AND enabledUser='true'"
    )
    assert {u["sourcedId"] for u in either} == {
        u["sourcedId"]
        for u in users
        if part.casefold() in u["familyName"].casefold() or u["givenName"] >= "X"
    }
    none = await lms.walk("users", auth, filter="status!='active'")
    assert none == []

    page = await lms.http.get(
        f"{PATH}/users", params={"sort": "familyName", "orderBy": "desc", "limit": "25",
                                  "offset": "5", "fields": "sourcedId,familyName"},
        headers=auth,
    )  # fmt: skip
    assert page.status_code == 200
    got = page.json()["users"]
    ordered = sorted(users, key=lambda u: u["sourcedId"], reverse=True)
    ordered.sort(key=lambda u: u["familyName"], reverse=True)
    assert got == [{"sourcedId": u["sourcedId"], "familyName": u["familyName"]} for u in
                   ordered[5:30]]  # fmt: skip
    assert page.headers["X-Total-Count"] == str(len(users))
    assert 'rel="prev"' in page.headers["Link"] and 'rel="next"' in page.headers["Link"]


def minor(response: httpx.Response) -> str:
    body = response.json()
    assert body["imsx_codeMajor"] == "failure" and body["imsx_severity"] == "error", body
    return str(body["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"])


BAD = [
    ({"filter": "familyName='Smith"}, "invalid_filter_field"),
    ({"filter": "familyName=='Smith'"}, "invalid_filter_field"),
    ({"filter": "shoeSize='9'"}, "invalid_filter_field"),
    ({"filter": "primaryOrg.sourcedId='campus-MAIN'"}, "invalid_filter_field"),
    ({"filter": "roles='student'"}, "invalid_filter_field"),
    ({"filter": "familyName='a' XOR givenName='b'"}, "invalid_filter_field"),
    ({"filter": "familyName='a\x01'"}, "invalid_filter_field"),
    ({"fields": "sourcedId,shoeSize"}, "invalid_selection_field"),
    ({"fields": "sourcedId,,familyName"}, "invalid_selection_field"),
    ({"sort": "shoeSize"}, "invalid_sort_field"),
    ({"sort": "familyName", "orderBy": "sideways"}, "invalid_sort_field"),
    ({"limit": "0"}, "invalid_data"),
    ({"limit": "1001"}, "invalid_data"),
    ({"offset": "-1"}, "invalid_data"),
    ({"offset": "\u00b2"}, "invalid_data"),
]


async def test_bad_parameters_and_strangers_are_refused_as_the_binding_says(lms: Lms) -> None:
    auth = await lms.bearer()
    for params, code in BAD:
        refused = await lms.http.get(f"{PATH}/users", params=params, headers=auth)
        assert refused.status_code == 400, (params, refused.text)
        assert minor(refused) == code, params

    no_token = await lms.http.get(f"{PATH}/users")
    assert no_token.status_code == 401 and minor(no_token) == "unauthorisedrequest"
    assert no_token.headers["WWW-Authenticate"] == "Bearer"
    forged = await lms.http.get(f"{PATH}/users", headers={"Authorization": "Bearer ora.e30.x"})
    assert forged.status_code == 401 and minor(forged) == "unauthorisedrequest"
    # the client's secret is no API token, and an API token is no access token
    as_api = await lms.http.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {lms.client_secret}"}
    )
    assert as_api.status_code == 401
    api_token = await lms.http.post("/api/v1/tokens", json={"name": "script"}, headers=lms.admin)
    secret = api_token.json()["token"]
    as_roster = await lms.http.get(f"{PATH}/orgs", headers={"Authorization": f"Bearer {secret}"})
    assert as_roster.status_code == 401
    plain = await lms.http.post(
        "/ims/oneroster/token", data={"grant_type": "client_credentials"},
        auth=(api_token.json()["id"], secret),
    )  # fmt: skip
    assert plain.status_code == 401 and plain.json()["error"] == "invalid_client"

    wrong = await lms.token(secret="not-the-secret")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    bad_scope = await lms.token(scope="https://example.org/scope/everything")
    assert bad_scope.status_code == 400 and bad_scope.json()["error"] == "invalid_scope"
    demographics_only = await lms.bearer(DEMOGRAPHICS)
    forbidden = await lms.http.get(f"{PATH}/users", headers=demographics_only)
    assert forbidden.status_code == 403 and minor(forbidden) == "forbidden"

    for path in ("users/nobody", "classes/no-such-class/students", "enrollments/x", "grades"):
        missing = await lms.http.get(f"{PATH}/{path}", headers=auth)
        assert missing.status_code == 404, path
        assert minor(missing) == "unknownobject"

    # a revoked client gets no token, and its access tokens stop working at once
    revoked = await lms.http.delete(f"/api/v1/tokens/{lms.client_id}", headers=lms.admin)
    assert revoked.status_code == 204
    assert (await lms.http.get(f"{PATH}/orgs", headers=auth)).status_code == 401
    assert (await lms.token()).status_code == 401
    audit = await lms.http.get(
        "/api/v1/audit", params={"action": "oneroster.token"}, headers=lms.admin
    )
    assert any(e["outcome"] == "failed" for e in audit.json()["items"])

    # guessing a client's secret is throttled as guessing a password is
    guessed = [(await lms.token(secret=f"guess-{n}")).status_code for n in range(7)]
    assert guessed[0] == 401 and guessed[-1] == 429, guessed  # after 5 failures in all
