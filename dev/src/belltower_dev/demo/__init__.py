"""A deterministic demo school for the reference SIS: ``make dev`` and the tests load it.

The same seed and the same ``today`` give the same rows, ids included, so a test can rely on
what the demo holds. Dates are laid out around ``today`` (a term in progress, one just ended, one
ahead) so every notifier has something to find on any day. Names and addresses come from Faker,
drawn once into small pools and then picked with one seeded ``random.Random``, which is about
ten times faster than asking Faker for each row. Rows are loaded with ``COPY``.

Each concern has its module (``people``, ``courses``, ``enrollments``, ``attendance``,
``records``, ``finance``, ``outreach``); ``school.generate`` calls them in their fixed order.

    python -m belltower_dev.demo --students 2500      # into BELLTOWER_DATABASE_URL
"""

from __future__ import annotations

from .codes import DEFAULT_SEED
from .load import install, load
from .model import DemoData, DemoSize
from .school import generate

__all__ = ["DEFAULT_SEED", "DemoData", "DemoSize", "generate", "install", "load"]
