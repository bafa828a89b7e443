"""The Mailchimp list records Mailchimp Sync reads: a student newsletter and an alumni list."""

from __future__ import annotations

import random

from .model import Draw, Row

STUDENT_LIST = "a1b2c3d4e5"
ALUMNI_LIST = "f6e5d4c3b2"


def add_mailing_lists(draw: Draw, people: dict[str, list[int]]) -> None:
    """A quarter of the students and half of the alumni are on a list; one in ten of those has
    since switched it off. Drawn from its own Random, so the rows before it stay as they were."""
    rng = random.Random(draw.data.seed * 7919 + 59)
    rows: list[Row] = []
    for list_id, members, share in (
        (STUDENT_LIST, people["student"], 0.25),
        (ALUMNI_LIST, people["alumni"], 0.5),
    ):
        for person in members:
            if rng.random() < share:
                rows.append((person, list_id, rng.random() >= 0.1))
    draw.data.add("mailing_list_members", ["person_id", "list_id", "enabled"], rows)
