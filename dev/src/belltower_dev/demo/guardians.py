"""The demo school's guardians: one or two for each minor student, drawn last so that every
earlier table keeps its rows."""

from __future__ import annotations

from .model import Draw, Row


def add_guardians(draw: Draw) -> None:
    """Parents (now and then a legal guardian or a relative) of the students flagged minor."""
    rng, pools, data = draw.rng, draw.pools, draw.data
    last_names = {row[0]: row[4] for row in data.tables["people"][1]}
    minors = sorted({row[0] for row in data.tables["person_indicators"][1] if row[1] == "minor"})
    guardians: list[Row] = []
    links: list[Row] = []
    for student in minors:
        for n in range(rng.choices([1, 2], [35, 65])[0]):
            gid = len(guardians) + 1
            first = rng.choice(pools.female if rng.random() < 0.5 else pools.male)
            last = last_names[student] if rng.random() < 0.85 else rng.choice(pools.last)
            email = f"{first}.{last}{rng.randint(1, 99)}@example.net".lower().replace(" ", "")
            phone = f"555-{rng.randint(200, 999):03d}-{rng.randint(0, 9999):04d}"
            created = draw.at(rng.uniform(40, 900))
            # Two in three agreed to texts; derived, not drawn, so every other value stays put.
            sms_ok = gid % 3 != 0
            guardians.append(
                (gid, f"G{gid:06d}", first, last, email, phone, sms_ok, created, created)
            )
            relationship = rng.choices(["parent", "guardian", "relative"], [85, 10, 5])[0]
            links.append((student, gid, relationship, n == 0))
    columns = ["id", "sis_id", "first_name", "last_name", "email", "phone", "sms_ok"]
    data.add("guardians", [*columns, "created_at", "updated_at"], guardians)
    data.add(
        "student_guardians", ["student_id", "guardian_id", "relationship", "is_primary"], links
    )
