"""Mailchimp Sync against the demo school and a stand-in built to the Marketing API 3.0 contract:
a first sync of the enabled list records in one batch, a member Mailchimp refuses failing
alone, a repeat of the occurrence that sends nothing, then an address change moved on its
member, a name change, a disabled record unsubscribed and the refused one sent again; the
results mailed to the notification addresses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from belltower.errors import ConfigurationError, InvalidInput
from belltower_dev.localservers import MailSink
from belltower_dev.standins.mailchimp import MailchimpStandIn
from belltower_integration.jobs import mailchimp_sync
from belltower_integration.mailchimp import api_root, subscriber_hash
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner, mails_to

NAME = mailchimp_sync.job_type.name
LIST = "a1b2c3"


@pytest.fixture
def mailchimp(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailchimpStandIn]:
    with MailchimpStandIn(lists=(LIST,), throttle_first=1) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_MAILCHIMP_API_KEY", server.key)
        yield server


async def _emails(pool, people: list[int]) -> dict[int, str]:
    rows = await pool.fetch(
        "SELECT DISTINCT ON (person_id) person_id, address FROM sis.emails WHERE person_id = ANY($1::bigint[])"
        " ORDER BY person_id, is_primary DESC, id",
        people,
    )
    return {r["person_id"]: r["address"] for r in rows}


async def test_a_sync_sends_list_records_once_then_only_changes(
    run_job: JobRunner, mailchimp: MailchimpStandIn, mail_sink: MailSink
) -> None:
    pool = await run_job.db.pool()
    people = [r["id"] for r in await pool.fetch(
        "SELECT p.id FROM sis.people p WHERE p.status = 'student' AND EXISTS"
        " (SELECT 1 FROM sis.emails e WHERE e.person_id = p.id) ORDER BY p.id LIMIT 6")]  # fmt: skip
    emails = await _emails(pool, people)
    await pool.executemany(
        "INSERT INTO sis.mailing_list_members (person_id, list_id, enabled) VALUES ($1, $2, $3)",
        [(p, LIST, p != people[5]) for p in people],
    )
    fake = people[4]
    await pool.execute(
        "UPDATE sis.emails SET address = 'nobody@mail.invalid' WHERE person_id = $1", fake
    )
    params = {"base_url": mailchimp.url, "lists": [LIST], "notify": ["registrar@school.test"]}

    first = await run_job(NAME, params, occurrence_id="occ-1")
    assert first.status == "failed" and "refused 1 member" in (first.error or "")
    audience = mailchimp.members[LIST]
    assert set(audience) == {
        subscriber_hash(emails[p]) for p in people[:4]
    }  # never-sent disabled: left alone
    assert (
        f"list {LIST}: 4 subscribed, 0 updated, 0 address changes, 0 unsubscribed, 1 failed"
        in first.text
    )
    assert "looks fake or invalid" in first.text and mailchimp.key not in first.text
    assert [p for m, p in mailchimp.requests if m == "POST"] == [
        f"/3.0/lists/{LIST}"
    ] * 2  # 429, then taken
    (mail,) = mails_to(mail_sink, "registrar@school.test")
    assert "Mailchimp Sync" in mail["Subject"]

    calls = len(mailchimp.requests)
    again = await run_job(NAME, params, occurrence_id="occ-1")
    assert len(mailchimp.requests) == calls + 1  # only the refused member is sent again
    assert again.status == "failed"

    await pool.execute("UPDATE sis.emails SET address = 'moved.student@school.test' WHERE person_id = $1 AND address = $2",
                       people[0], emails[people[0]])  # fmt: skip
    await pool.execute("UPDATE sis.people SET first_name = 'Renamed' WHERE id = $1", people[1])
    await pool.execute(
        "UPDATE sis.mailing_list_members SET enabled = false WHERE person_id = $1", people[2]
    )
    await pool.execute(
        "UPDATE sis.emails SET address = 'fixed.student@school.test' WHERE person_id = $1", fake
    )
    later = await run_job(NAME, params, occurrence_id="occ-2")
    assert later.status == "succeeded", later.error
    assert (
        f"list {LIST}: 1 subscribed, 1 updated, 1 address changes, 1 unsubscribed, 0 failed, 1 unchanged"
        in later.text
    )
    assert subscriber_hash(emails[people[0]]) not in audience
    assert audience[subscriber_hash("moved.student@school.test")]["status"] == "subscribed"
    assert audience[subscriber_hash(emails[people[1]])]["merge_fields"]["FNAME"] == "Renamed"
    assert audience[subscriber_hash(emails[people[2]])]["status"] == "unsubscribed"
    assert len(audience) == 5


async def test_a_list_mailchimp_does_not_have_fails_its_batches_and_keeps_nothing(
    run_job: JobRunner, mailchimp: MailchimpStandIn
) -> None:
    pool = await run_job.db.pool()
    members = await pool.fetchval(
        "SELECT count(*) FROM sis.mailing_list_members m WHERE m.list_id = 'a1b2c3d4e5' AND m.enabled"
        " AND EXISTS (SELECT 1 FROM sis.emails e WHERE e.person_id = m.person_id)"
    )
    assert members > 500  # the demo school's student newsletter: more than one batch
    ran = await run_job(NAME, {"base_url": mailchimp.url, "lists": ["a1b2c3d4e5"]})
    assert ran.status == "failed"
    assert ran.text.count("404: The requested resource could not be found.") == 2
    assert f"{members} failed" in ran.text
    assert await pool.fetchval("SELECT count(*) FROM sis.directory_sync_records") == 0


@pytest.mark.unit
def test_the_datacenter_comes_from_the_key() -> None:
    assert api_root("0123abcd-us21", "k") == "https://us21.api.mailchimp.com"
    assert (
        subscriber_hash(" Someone@Example.ORG ") == "a70eaed09677478b42b11fc7a04f4c87"
    )  # md5("someone@example.org")
    with pytest.raises(ConfigurationError, match="datacenter"):
        api_root("0123abcd", "mailchimp-api-key")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"api_key_secret": "a/b"}, "param.api_key_secret"),
     ({"lists": ["not a list"]}, "param.lists"),
     ({"base_url": "http://169.254.169.254/"}, "param.base_url"),
     ({"notify": ["not-an-address"]}, "param.notify"),
     ({"group": "a b"}, "param.group")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(mailchimp_sync.job_type.info(), params)
    assert caught.value.field.startswith(field)
