"""Attendance marks for the current term's meetings already held."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time

from .courses import Offering
from .enrollments import Registration
from .model import Draw, Row


def add_attendance(draw: Draw, offering: Offering, reg: Registration, students: list[int]) -> None:
    """Each student's marks by their own absence rate; about 3% of the meetings that require
    attendance have none recorded (the No Attendance Record notifier's rows)."""
    rng, today = draw.rng, draw.today
    attendance: list[Row] = []
    roster: dict[int, list[int]] = defaultdict(list)
    enrollment_by_id = {e[0]: e for e in reg.enrollments}
    for student, eids in reg.current.items():
        for e in eids:
            row = enrollment_by_id[e]
            if row[3] in ("enrolled", "completed"):
                roster[row[2]].append(student)
    propensity = {s: rng.choice([0.01, 0.03, 0.05, 0.08, 0.15, 0.25]) for s in students}
    for s, day in offering.meetings:
        info = offering.info[s]
        if info.term != 2 or day >= today or not info.attendance or rng.random() < 0.03:
            continue
        teacher = offering.sections[info.row][6]
        stamp = datetime.combine(day, time(17, 0), UTC)
        for student in roster[s]:
            r = rng.random()
            p = propensity[student]
            mark = "absent" if r < p else "tardy" if r < p * 1.6 else "present"
            attendance.append((s, student, day, mark, stamp, teacher))
    draw.data.add(
        "attendance",
        ["section_id", "person_id", "meets_on", "mark", "recorded_at", "recorded_by"],
        attendance,
    )
