"""The pure parts of texting: phone numbers in E.164, and what Twilio's answers mean."""

from __future__ import annotations

import httpx
import pytest

from belltower.errors import InvalidInput, Unavailable
from belltower_integration import twilio
from belltower_integration.jobs import registry as integration
from belltower_integration.phones import is_e164, to_e164
from belltower_notifier.jobs import registry as notifier
from belltower_scheduler.catalog import validate_params

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+14155550123", "", "+14155550123"),
        ("+1 (415) 555-0123", "", "+14155550123"),
        ("(415) 555-0123", "1", "+14155550123"),
        ("1-415-555-0123", "1", "+14155550123"),
        ("0044 20 7946 0958", "", "+442079460958"),
        ("020 7946 0958", "44", "+442079460958"),
        ("415-555-0123", "", None),  # no country to put in front
        ("+0123456", "", None),  # a country code never starts with 0
        ("+1234567890123456", "", None),  # 16 digits
        ("+1415555012x3", "", None),
        ("+1415\n5550123", "", None),
        ("", "1", None),
    ],
)
def test_numbers_become_e164_or_nothing(raw: str, country: str, expected: str | None) -> None:
    assert to_e164(raw, country) == expected
    if expected:
        assert is_e164(expected)


def test_twilio_error_documents_are_read_and_bounded() -> None:
    body = {"code": 21610, "message": "Attempt to send to unsubscribed recipient" + "!" * 500,
            "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}  # fmt: skip
    code, message = twilio._error(httpx.Response(400, json=body))
    assert code == twilio.OPTED_OUT and message.startswith("Attempt") and len(message) == 200
    assert twilio._error(httpx.Response(502, text="<html>bad gateway</html>")) == (None, "HTTP 502")


def test_a_sid_must_look_like_one_before_it_goes_into_a_status_path() -> None:
    sid = "CA" + "0123456789abcdef" * 2
    assert twilio._receipt({"sid": sid, "status": "queued"}) == twilio.Receipt(sid, "queued")
    for bad in ("../../Accounts/AC1/Calls", sid + "/x", "", None):
        with pytest.raises(Unavailable, match="without a sid"):
            twilio._receipt({"sid": bad, "status": "queued"})


def test_retry_after_is_waited_up_to_a_minute() -> None:
    assert twilio._retry_after(httpx.Response(429, headers={"Retry-After": "3"}), 1.0) == 3.0
    assert twilio._retry_after(httpx.Response(429, headers={"Retry-After": "soon"}), 2.0) == 2.0
    assert twilio._retry_after(httpx.Response(503), 4.0) == 4.0
    with pytest.raises(Unavailable, match="wait 3600 s"):
        twilio._retry_after(httpx.Response(429, headers={"Retry-After": "3600"}), 1.0)


@pytest.mark.parametrize(
    ("job", "params", "field"),
    [
        (
            "messaging.communication_queue",
            {"twilio_base_url": "https://169.254.169.254/"},
            "param.twilio_base_url",
        ),
        (
            "messaging.communication_queue",
            {"twilio_base_url": "http://api.twilio.com"},
            "param.twilio_base_url",
        ),
        ("messaging.communication_queue", {"sms_from": "415-555-0123"}, "param.sms_from"),
        (
            "messaging.communication_queue",
            {"twilio_auth_token_secret": "../etc/passwd"},
            "param.twilio_auth_token_secret",
        ),
        (
            "messaging.communication_queue",
            {"messaging_service_sid": "MG123"},
            "param.messaging_service_sid",
        ),
        ("messaging.communication_queue", {"voice_provider": "robocall"}, "param.voice_provider"),
        ("messaging.communication_queue", {"voice_from": "415-555-0123"}, "param.voice_from"),
        ("messaging.communication_queue", {"voice_from": "+1 415 555 0123"}, "param.voice_from"),
        (
            "messaging.communication_queue",
            {"voice_status_callback": "https://10.0.0.5/calls"},
            "param.voice_status_callback",
        ),
        (
            "messaging.communication_queue",
            {"voice_status_events": ["hangup"]},
            "param.voice_status_events.0",
        ),
        ("messaging.attendance_sms", {"text": "{{ ''.__class__ }}"}, "param.text"),
        ("messaging.attendance_sms", {"marks": ["late"]}, "param.marks.0"),
        (
            "messaging.email_notifications",
            {"guardian_relationships": []},
            "param.guardian_relationships",
        ),
        (
            "notifier.attendance",
            {"guardian_relationships": ["uncle"]},
            "param.guardian_relationships.0",
        ),
    ],
)
def test_messaging_parameters_are_fenced_when_a_job_is_saved(
    job: str, params: dict[str, object], field: str
) -> None:
    kind = integration.get(job) or notifier.get(job)
    assert kind is not None
    with pytest.raises(InvalidInput) as refused:
        validate_params(kind.info(), params)
    assert refused.value.field == field
