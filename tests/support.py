"""Helpers shared by the test tiers (not fixtures): reading what JetStream holds."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg


async def stream_messages(
    js: JetStreamContext, stream: str, subject_prefix: str = ""
) -> list[RawStreamMsg]:
    """Every message a stream holds now, oldest first, optionally only subjects with a prefix."""
    state = (await js.stream_info(stream)).state
    if not state.messages:
        return []
    out = []
    for seq in range(max(state.first_seq, 1), state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except Exception as exc:  # a deleted sequence in the middle of the range
            if "no message found" in str(exc).lower() or type(exc).__name__ == "NotFoundError":
                continue
            raise
        if msg.subject.startswith(subject_prefix):
            out.append(msg)
    return out
