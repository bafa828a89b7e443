"""What the demo generator fills and draws from: its size, its tables, its seeded randomness."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

Row = tuple[Any, ...]


@dataclass(frozen=True)
class DemoSize:
    """How big the demo school is; the defaults make a small college of a few thousand students."""

    students: int = 2500
    faculty: int = 120
    staff: int = 60
    prospects: int = 250
    alumni: int = 300


@dataclass
class DemoData:
    """Rows per table, in load order: ``tables[name] = (columns, rows)``."""

    today: date
    seed: int
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)

    def add(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.tables[table] = (columns, rows)

    def count(self, table: str) -> int:
        return len(self.tables[table][1])


class Pools:
    """Names, streets and cities drawn once from Faker, then picked with the seeded Random."""

    def __init__(self, seed: int) -> None:
        from faker import Faker

        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.female = [fake.first_name_female() for _ in range(300)]
        self.male = [fake.first_name_male() for _ in range(300)]
        self.last = [fake.last_name() for _ in range(600)]
        self.streets = [fake.street_address() for _ in range(400)]
        self.places = [(fake.city(), fake.state_abbr(), fake.zipcode()) for _ in range(120)]


@dataclass
class Draw:
    """One generation run: the day it is laid out around, the one seeded Random every part
    draws from in turn (so the parts must run in the same order), the pools and the tables."""

    today: date
    rng: random.Random
    pools: Pools
    data: DemoData

    def at(self, days_ago: float) -> datetime:
        """A timestamp ``days_ago`` before today's midnight UTC, on a whole second."""
        midnight = datetime.combine(self.today, time(0, 0), UTC)
        return midnight - timedelta(seconds=round(days_ago * 86400))
