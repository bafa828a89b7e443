"""The TwiML a queued call reads out: the message is only ever words in one ``<Say>``."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from belltower_integration.delivery import Undeliverable
from belltower_integration.voice import twiml

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "Snow day: school is closed.",
        "Fish & chips <b>Friday</b>",
        '</Say><Dial>+19005550100</Dial><Say>"',
        "<![CDATA[ ]]><Hangup/>",
        "<!DOCTYPE x [<!ENTITY e 'boom'>]>&e;",
        "a]]>b",
    ],
)
def test_the_message_is_read_out_word_for_word_and_never_becomes_a_verb(text: str) -> None:
    root = ElementTree.fromstring(twiml(text))
    assert root.tag == "Response" and [child.tag for child in root] == ["Say"]
    assert root[0].text == text and len(root[0]) == 0


def test_what_xml_cannot_hold_is_dropped_and_what_twilio_cannot_take_is_refused() -> None:
    assert ElementTree.fromstring(twiml("Bus\x00 late\x1b")).findtext("Say") == "Bus  late"
    with pytest.raises(Undeliverable, match="no text to read out"):
        twiml(" \x07 ")
    assert len(twiml("x" * 3968)) == 4000
    with pytest.raises(Undeliverable, match=r"4,001 characters of TwiML.*32018"):
        twiml("x" * 3969)
    with pytest.raises(Undeliverable, match="at most 4,000"):
        twiml("&" * 1000)  # each & is five characters escaped
