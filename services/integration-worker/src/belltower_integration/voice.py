"""Calls through Twilio for the Communication Queue: the queued text is read out (``<Say>``),
numbers on the opt-out list are not called, the Call's sid and status recorded in
``sis.outbox`` and followed up like a text's (see ``belltower_integration.delivery``).

The message is the text of one ``<Say>`` in a ``<Response>``, XML-escaped, so whatever it holds
(``<Hangup/>``, ``</Say><Dial>``, ``&``) is read out as words and never becomes a TwiML verb.
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

from . import delivery
from .delivery import Undeliverable
from .twilio import CALL_PENDING, MAX_TWIML_CHARS, Refused, TwilioClient

CALLS = delivery.Channel("voice", "calls", CALL_PENDING, TwilioClient.fetch_call)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters XML 1.0 cannot hold, even escaped: dropped rather than breaking the document."""


def twiml(text: str) -> str:
    """The TwiML that reads ``text`` out; refuses what Twilio could not take."""
    spoken = _NOT_XML.sub(" ", text).strip()
    if not spoken:
        raise Undeliverable("the message has no text to read out: not called")
    document = f"<Response><Say>{escape(spoken)}</Say></Response>"
    if len(document) > MAX_TWIML_CHARS:
        raise Undeliverable(
            f"the message makes {len(document):,} characters of TwiML; Twilio takes at most "
            f"{MAX_TWIML_CHARS:,} (its error 32018): not called"
        )
    return document


async def call(conn: Any, twilio: TwilioClient, msg: Any, default_country: str) -> None:
    """Call one queued message's number unless it opted out; record Twilio's receipt."""
    phone = await delivery.reachable(
        conn, msg, default_country, "is on the opt-out list (sis.sms_opt_outs): not called"
    )
    document = twiml(msg["body_text"])
    try:
        receipt = await twilio.call(phone, document)
    except Refused as exc:
        raise Undeliverable(f"Twilio refused the call: {exc.message}") from None
    await delivery.record(conn, msg, phone, receipt)
