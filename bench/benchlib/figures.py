"""A measured figure and its one-line JSON form, the only thing ``bench/run.py`` writes to stdout.

One JSON object per line lets CI and people diff runs with ``jq`` and keep them as artefacts;
every figure states its target and whether it met it, so a reader needs no other document.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from nats.js import JetStreamContext


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    target: float
    better: Literal["higher", "lower"]
    baseline: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    also_required: bool = True
    """Further conditions (e.g. the ratio to raw publish) that must hold for ``met``."""
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.value is None:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool:
        if self.value is None or self.error is not None:
            return False
        ok = self.value >= self.target if self.better == "higher" else self.value <= self.target
        return ok and self.also_required

    def to_json(self) -> str:
        out: dict[str, Any] = {"name": self.name, "value": _round(self.value), "unit": self.unit}
        if self.baseline is not None:
            out["baseline"] = _round(self.baseline)
            out["ratio"] = _round(self.ratio, 3)
        out["target"] = self.target
        out["met"] = self.met
        out.update({k: _round(v) if isinstance(v, float) else v for k, v in self.extra.items()})
        if self.error is not None:
            out["error"] = self.error
        return json.dumps(out)


def _round(value: float | None, digits: int = 2) -> float | None:
    if value is None:
        return None
    return round(value, digits if abs(value) >= 1 else max(digits, 4))


async def publish_all(js: JetStreamContext, messages: Iterable[tuple[str, bytes, str]]) -> float:
    """Publish with ``publish_async`` and wait for every ack; returns the seconds it took.

    This is the raw-client ceiling the dispatcher is compared with: no database, no planning,
    one ``Nats-Msg-Id`` header per message, the client's default in-flight limit.
    """
    started = time.perf_counter()
    futures = []
    for subject, payload, msg_id in messages:
        futures.append(await js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id}))
    await asyncio.gather(*futures)
    return time.perf_counter() - started
