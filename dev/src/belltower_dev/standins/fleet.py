"""The outside services ``make dev`` serves beside Belltower: the LMS, rostering and state
reporting stand-ins, each on a free loopback port, with the secrets the integration worker reads
and one ready-to-run job document each.

The stand-ins are the ones the catalog tests drive (built to each vendor's published contract),
so a job created from ``make dev``'s banner runs against the same checks as in the tests: a
Moodle export really creates users in the Moodle stand-in, an Ed-Fi sync is refused out of
dependency order, and so on. The stand-ins keep what they were sent in memory until ``make dev``
stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .blackboard import BlackboardStandIn
from .canvas import CanvasStandIn
from .edfi import EdFiStandIn
from .moodle import MoodleStandIn
from .oneroster import OneRosterStandIn
from .schoology import SchoologyStandIn
from .server import ThreadedServer

LOOPBACK = "127.0.0.1"
EDFI_SCHOOL = 255901001
"""The Ed-Fi school id the stand-in knows (schools exist on the ODS before a sync, as in a real one)."""


@dataclass(frozen=True)
class StandIn:
    """One running stand-in: its name, address, secrets and an example job."""

    name: str
    url: str
    secrets: dict[str, str]
    """Environment variables (``BELLTOWER_SECRET_*``) the job's secret references resolve to."""
    job_type: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Recipe:
    name: str
    make: Callable[[], ThreadedServer]
    describe: Callable[[Any], StandIn]


def _canvas(s: CanvasStandIn) -> StandIn:
    return StandIn(
        "Canvas", s.url, {"BELLTOWER_SECRET_CANVAS_TOKEN": s.token}, "lms.canvas_export",
        {"base_url": s.url},
    )  # fmt: skip


def _moodle(s: MoodleStandIn) -> StandIn:
    return StandIn(
        "Moodle", s.url, {"BELLTOWER_SECRET_MOODLE_TOKEN": s.token}, "lms.moodle_export",
        {"base_url": s.url},
    )  # fmt: skip


def _blackboard(s: BlackboardStandIn) -> StandIn:
    secrets = {
        "BELLTOWER_SECRET_BLACKBOARD_KEY": s.key,
        "BELLTOWER_SECRET_BLACKBOARD_SECRET": s.secret,
    }
    return StandIn("Blackboard Learn", s.url, secrets, "lms.blackboard_export", {"base_url": s.url})


def _schoology(s: SchoologyStandIn) -> StandIn:
    secrets = {
        "BELLTOWER_SECRET_SCHOOLOGY_KEY": s.key,
        "BELLTOWER_SECRET_SCHOOLOGY_SECRET": s.secret,
    }
    params = {"base_url": f"{s.url}/v1", "student_role_id": 11, "teacher_role_id": 12}
    return StandIn("Schoology", f"{s.url}/v1", secrets, "lms.schoology_export", params)


def _oneroster(s: OneRosterStandIn) -> StandIn:
    secrets = {
        "BELLTOWER_SECRET_ONEROSTER_CLIENT_ID": s.client_id,
        "BELLTOWER_SECRET_ONEROSTER_CLIENT_SECRET": s.client_secret,
    }
    params = {"base_url": s.url, "token_url": s.token_url}
    return StandIn("OneRoster 1.2 REST", s.url, secrets, "rostering.oneroster_rest_push", params)


def _edfi(s: EdFiStandIn) -> StandIn:
    secrets = {"BELLTOWER_SECRET_EDFI_KEY": s.key, "BELLTOWER_SECRET_EDFI_SECRET": s.secret}
    params = {"base_url": s.url, "school_id": EDFI_SCHOOL}
    return StandIn("Ed-Fi ODS/API", s.url, secrets, "rostering.edfi_sync", params)


RECIPES = (
    _Recipe("canvas", CanvasStandIn, _canvas),
    _Recipe("moodle", MoodleStandIn, _moodle),
    _Recipe("blackboard", BlackboardStandIn, _blackboard),
    _Recipe("schoology", SchoologyStandIn, _schoology),
    _Recipe("oneroster", OneRosterStandIn, _oneroster),
    _Recipe("edfi", lambda: EdFiStandIn(school_ids=(EDFI_SCHOOL,)), _edfi),
)


def outbound_environment() -> dict[str, str]:
    """What lets jobs reach stand-ins on loopback over plain http: development only (a real
    install keeps the outbound fence's defaults, https to public addresses)."""
    return {
        "BELLTOWER_OUTBOUND_ALLOW_HTTP": "true",
        "BELLTOWER_OUTBOUND_ALLOW_HOSTS": f'["{LOOPBACK}"]',
    }


@contextlib.contextmanager
def running() -> Iterator[list[StandIn]]:
    """Every stand-in started (each on its own free port), stopped on leaving."""
    with contextlib.ExitStack() as stack:
        yield [r.describe(stack.enter_context(r.make())) for r in RECIPES]


def environment(standins: list[StandIn]) -> dict[str, str]:
    """The secrets of every stand-in and the outbound settings that let jobs reach them."""
    env = outbound_environment()
    for s in standins:
        env |= s.secrets
    return env
