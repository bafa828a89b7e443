"""``python -m belltower_dev.demo``: load the demo school into ``BELLTOWER_DATABASE_URL``.

    python -m belltower_dev.demo --students 2500

The empty reference schema, without the demo school, is ``python -m belltower.sis``.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import date

from belltower.settings import get_settings

from .codes import DEFAULT_SEED
from .load import install
from .model import DemoSize


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Load the demo school into the reference SIS schema."
    )
    parser.add_argument("--students", type=int, default=DemoSize.students)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--today", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    parser.add_argument("--replace", action="store_true", help="empty the sis tables first")
    args = parser.parse_args()
    url = get_settings().database_url
    counts = asyncio.run(
        install(
            url, today=args.today, seed=args.seed,
            size=DemoSize(students=args.students), replace=args.replace,
        )
    )  # fmt: skip
    print(", ".join(f"{table} {n}" for table, n in counts.items()))


if __name__ == "__main__":
    main()
