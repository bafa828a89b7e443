"""Who takes which section: enrollments, waitlists, schedule changes and the grades of ended ones."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from .courses import Offering
from .grades import grade_row
from .model import Draw, Row


@dataclass
class Registration:
    """The enrollment rows and what attendance and billing read from them."""

    enrollments: list[Row] = field(default_factory=list)
    grades: list[Row] = field(default_factory=list)
    changes: list[Row] = field(default_factory=list)
    waitlist: list[Row] = field(default_factory=list)
    enrolled_count: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    waiting: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # student -> current-term enrollment ids
    current: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    term_credits: dict[tuple[int, int], Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )


def add_registration(draw: Draw, offering: Offering, students: list[int]) -> Registration:
    """Enroll every student for the terms, then add the sections with their seats counted."""
    rng = draw.rng
    reg = Registration()
    by_term: dict[int, list[int]] = defaultdict(list)
    for s, info in offering.info.items():
        by_term[info.term].append(s)
    for student in students:
        for term_id in (1, 2, 3):
            if term_id == 3 and rng.random() < 0.4:
                continue
            wanted = rng.choices([2, 3, 4, 5], [10, 25, 45, 20])[0]
            for s in rng.sample(by_term[term_id], wanted + 2):
                if wanted == 0:
                    break
                if reg.enrolled_count[s] >= offering.info[s].capacity:
                    if term_id != 1 and reg.waiting[s] < 6:
                        reg.waiting[s] += 1
                        reg.waitlist.append(
                            (s, student, reg.waiting[s], draw.at(rng.uniform(1, 20)), "waiting", None)
                        )  # fmt: skip
                    continue
                wanted -= 1
                _enroll(draw, reg, offering, student, term_id, s)
    change_rows = _change_rows(reg)
    _drops_below_full_time(draw, reg, students, change_rows)
    for s, count in reg.enrolled_count.items():
        offering.sections[offering.info[s].row][11] = count
    _add_tables(draw, offering, reg, change_rows)
    return reg


def _enroll(
    draw: Draw, reg: Registration, offering: Offering, student: int, term_id: int, s: int
) -> None:
    rng, today, info = draw.rng, draw.today, offering.info[s]
    eid = len(reg.enrollments) + 1
    registered = datetime.combine(info.start, time(0, 0), UTC) - timedelta(days=rng.randint(5, 60))
    status, dropped_at, withdrawn_on = "enrolled", None, None
    if term_id == 1:
        status = "completed"
    elif term_id == 2 and rng.random() < 0.05:
        status = "dropped" if rng.random() < 0.5 else "withdrawn"
    elif info.end < today:
        status = "completed"
    if status in ("enrolled", "completed"):
        reg.enrolled_count[s] += 1
        reg.term_credits[(student, term_id)] += info.credits
    confirmed = registered + timedelta(days=1) if rng.random() < 0.7 else None
    if status == "dropped":
        dropped_at = draw.at(rng.uniform(0, 12))
    if status == "withdrawn":
        withdrawn_on = today - timedelta(days=rng.randint(0, 10))
    reg.enrollments.append(
        (eid, student, s, status, info.credits, registered, confirmed, dropped_at,
         withdrawn_on, registered)
    )  # fmt: skip
    if term_id == 2:
        reg.current[student].append(eid)
    if term_id == 2 and status in ("dropped", "withdrawn"):
        when = dropped_at or datetime.combine(withdrawn_on, time(15, 0), UTC)  # type: ignore[arg-type]
        action = "drop" if status == "dropped" else "withdraw"
        reg.changes.append((student, s, 2, action, info.credits, when))
    elif term_id == 2 and registered > draw.at(14):
        reg.changes.append((student, s, 2, "add", info.credits, registered))
    if info.end < today:
        reg.grades.append(grade_row(rng, eid, info, today, status))


def _change_rows(reg: Registration) -> list[Row]:
    """Schedule-change rows carry the term's credits before and after each change, in order."""
    rows: list[Row] = []
    for student, s, term_id, action, credits, when in sorted(reg.changes, key=lambda c: c[5]):
        after = reg.term_credits[(student, term_id)]
        # Rebuild "before" from "after": an add raised the load, a drop or withdrawal lowered it.
        before = after - credits if action == "add" else after + credits
        rows.append((student, s, term_id, action, credits, before, after, when, "demo"))
    return rows


def _drops_below_full_time(
    draw: Draw, reg: Registration, students: list[int], change_rows: list[Row]
) -> None:
    """A few students dropped below full time this week: the Below Full-Time Status notifier's rows."""
    enrollments = reg.enrollments
    for student in draw.rng.sample(students, 40):
        load = reg.term_credits[(student, 2)]
        if not Decimal(12) <= load < Decimal(15):
            continue
        enrolled_here = [e for e in reg.current[student] if enrollments[e - 1][3] == "enrolled"]
        if not enrolled_here:
            continue
        e = enrollments[enrolled_here[0] - 1]
        s = e[2]
        enrollments[e[0] - 1] = (
            *e[:3],
            "dropped",
            *e[4:7],
            draw.at(draw.rng.uniform(0.1, 2)),
            *e[8:],
        )
        reg.enrolled_count[s] -= 1
        reg.term_credits[(student, 2)] = load - e[4]
        change_rows.append(
            (student, s, 2, "drop", e[4], load, load - e[4], enrollments[e[0] - 1][7], "demo")
        )


def _add_tables(draw: Draw, offering: Offering, reg: Registration, change_rows: list[Row]) -> None:
    data = draw.data
    data.add(
        "sections",
        ["id", "course_id", "term_id", "section_code", "division_id", "campus_id", "lead_faculty_id",
         "starts_on", "ends_on", "meeting_days", "capacity", "enrolled", "attendance_required"],
        offering.finished_sections(),
    )  # fmt: skip
    data.add("section_meetings", ["section_id", "meets_on"], offering.meetings)
    data.add(
        "enrollments",
        ["id", "person_id", "section_id", "status", "credits", "registered_at", "confirmed_at",
         "dropped_at", "withdrawn_on", "updated_at"],
        reg.enrollments,
    )  # fmt: skip
    data.add(
        "schedule_changes",
        ["person_id", "section_id", "term_id", "action", "credits", "term_credits_before",
         "term_credits_after", "changed_at", "changed_by"],
        change_rows,
    )  # fmt: skip
    data.add(
        "grades",
        ["enrollment_id", "grade", "is_official", "is_incomplete", "incomplete_due", "final_posted",
         "posted_at", "updated_at"],
        reg.grades,
    )  # fmt: skip
    # Some full sections opened a seat since the waitlist formed: Auto Waitlist Enroll fills them.
    for s in draw.rng.sample(sorted(reg.waiting), min(len(reg.waiting), 10)):
        offering.sections[offering.info[s].row][10] += draw.rng.randint(1, 2)
    data.tables["sections"] = (data.tables["sections"][0], offering.finished_sections())
    data.add(
        "waitlist",
        ["section_id", "person_id", "position", "added_at", "state", "resolved_at"],
        reg.waitlist,
    )
