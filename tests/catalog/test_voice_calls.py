"""The Communication Queue placing calls through Twilio's Voice API (a stand-in built to its
contract): the message read out in escaped TwiML, once per queued message, held in quiet hours,
never to an opted-out number, a 429 waited out, the call's status followed up."""

from __future__ import annotations

import uuid
from typing import Any

from belltower_dev.standins.twilio import TwilioStandIn
from tests.catalog.conftest import closed_hours

OPEN = {"time_zone": "UTC", "do_not_send_before": "00:00", "do_not_send_after": "23:59"}
SNEAKY = "Snow day & early pick-up <Hangup/></Say><Dial>+19005550100</Dial><Say>at 12:30"
"""A message that would end the call or dial elsewhere if it went into the TwiML unescaped."""


def calls(twilio: TwilioStandIn, **params: Any) -> dict[str, Any]:
    return {**OPEN, "voice_provider": "twilio", "twilio_base_url": twilio.url,
            "voice_from": "+15005550006", **params}  # fmt: skip


async def queue(conn: Any, to: str, text: str) -> int:
    queued = await conn.fetchval(
        "INSERT INTO sis.communication_queue (channel, to_address, body_text) VALUES ('voice', $1, $2) RETURNING id",
        to, text,
    )  # fmt: skip
    return int(queued)


def posts(twilio: TwilioStandIn) -> list[int]:
    return [status for method, _, status in twilio.requests if method == "POST"]


async def test_a_queued_call_is_placed_once_with_its_text_escaped_and_waits_out_quiet_hours_and_429(
    run_job, sis_conn, twilio: TwilioStandIn
) -> None:
    await queue(sis_conn, "+1 555 010 0011", SNEAKY)
    stopped = await queue(sis_conn, "+15550100013", "Bus late")
    await sis_conn.execute(
        "INSERT INTO sis.sms_opt_outs (phone, source, reason) VALUES ('+15550100013', 'school', 'asked')"
    )

    held = await run_job("messaging.communication_queue", calls(twilio, **closed_hours()))
    assert "0 calls placed" in held.summary and "2 held for quiet hours" in held.summary
    assert twilio.requests == []

    twilio.throttle_first = 1  # Twilio's rate limit, with Retry-After: 1
    occurrence = uuid.uuid4().hex
    placed = await run_job("messaging.communication_queue", calls(twilio), occurrence_id=occurrence)
    assert placed.status == "succeeded", placed.text
    assert "1 calls placed" in placed.summary and "1 failed" in placed.summary
    assert posts(twilio) == [429, 201]
    (call,) = twilio.called("+15550100011")
    assert call.sender == "+15005550006"
    assert call.verbs == ["Say"] and call.said == [SNEAKY]  # read out, word for word, nothing else
    assert "&lt;Hangup/&gt;&lt;/Say&gt;&lt;Dial&gt;" in call.twiml and "&amp;" in call.twiml
    assert twilio.called("+15550100013") == []
    assert "+15550100013 is on the opt-out list (sis.sms_opt_outs): not called" in placed.text
    assert await sis_conn.fetchval(
        "SELECT state FROM sis.communication_queue WHERE id = $1", stopped
    ) == "failed"  # fmt: skip
    outbox = await sis_conn.fetchrow(
        "SELECT channel, provider, provider_sid, status, to_address FROM sis.outbox"
    )
    assert dict(outbox) == {"channel": "voice", "provider": "twilio", "provider_sid": call.sid,
                            "status": "queued", "to_address": "+15550100011"}  # fmt: skip

    again = await run_job("messaging.communication_queue", calls(twilio), occurrence_id=occurrence)
    assert again.status == "succeeded" and "0 calls placed" in again.summary, again.text
    assert posts(twilio) == [429, 201] and len(twilio.calls) == 1


async def test_call_statuses_are_followed_up_apart_from_texts_and_calls_twilio_cannot_take_are_refused(
    run_job, sis_conn, twilio: TwilioStandIn
) -> None:
    await queue(sis_conn, "+15550100021", "School closes at noon")
    await queue(sis_conn, "+15550100022", "School closes at noon")
    too_long = await queue(sis_conn, "+15550100023", "word " * 900)
    await sis_conn.execute(
        "INSERT INTO sis.communication_queue (channel, to_address, body_text) VALUES ('sms', '+15550100021', 'Noon')"
    )
    twilio.unanswered["+15550100022"] = "busy"
    both = calls(twilio, voice_from="", sms_provider="twilio", sms_from="+15005550007",
                 voice_status_callback="https://school.example/twilio/calls",
                 voice_status_events=["initiated", "completed"])  # fmt: skip

    first = await run_job("messaging.communication_queue", both)
    assert "1 texts sent, 2 calls placed" in first.summary, first.text
    assert "1 failed" in first.summary
    assert await sis_conn.fetchval(
        "SELECT last_error FROM sis.communication_queue WHERE id = $1", too_long
    ) == "the message makes 4,531 characters of TwiML; Twilio takes at most 4,000 (its error 32018): not called"  # fmt: skip
    (call,) = twilio.called("+15550100021")
    assert call.sender == "+15005550007"  # no voice_from: the SMS number calls
    assert call.status_callback == "https://school.example/twilio/calls"
    assert call.status_events == ["initiated", "completed"]

    second = await run_job("messaging.communication_queue", both)
    assert "delivery status of earlier texts: 1 sent" in second.text
    assert "delivery status of earlier calls: 2 ringing" in second.text
    third = await run_job("messaging.communication_queue", both)
    assert "delivery status of earlier calls: 1 busy, 1 in-progress" in third.text
    fourth = await run_job("messaging.communication_queue", both)
    assert "delivery status of earlier calls: 1 completed" in fourth.text  # busy is final
    statuses = "SELECT channel, to_address, status FROM sis.outbox ORDER BY channel, to_address"
    assert [tuple(r) for r in await sis_conn.fetch(statuses)] == [
        ("sms", "+15550100021", "delivered"),
        ("voice", "+15550100021", "completed"), ("voice", "+15550100022", "busy"),
    ]  # fmt: skip
    assert posts(twilio) == [201, 201, 201]
    assert all(status == 200 for method, _, status in twilio.requests if method == "GET")

    await queue(sis_conn, "+15550100024", "Picture day")
    unnamed = await run_job(
        "messaging.communication_queue", {**both, "sms_provider": "outbox", "sms_from": ""}
    )
    assert unnamed.status == "failed" and "param.voice_from" in (unnamed.error or "")
    assert posts(twilio) == [201, 201, 201]
