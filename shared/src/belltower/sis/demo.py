"""A deterministic demo school for the reference SIS: ``make dev`` and the tests load it.

The same seed and the same ``today`` give the same rows, ids included, so a test can rely on
what the demo holds. Dates are laid out around ``today`` (a term in progress, one just ended, one
ahead) so every notifier has something to find on any day. Names and addresses come from Faker,
drawn once into small pools and then picked with one seeded ``random.Random``, which is about
ten times faster than asking Faker for each row. Rows are loaded with ``COPY``.

    python -m belltower.sis.demo --students 2500      # into BELLTOWER_DATABASE_URL
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

DEFAULT_SEED = 2026
SCHOOL_DOMAIN = "belltower.edu"

DIVISIONS = [("UG", "Undergraduate"), ("GR", "Graduate"), ("CE", "Continuing Education")]
CAMPUSES = [("MAIN", "Main Campus"), ("NORTH", "North Campus"), ("ONLINE", "Online")]
LEVELS = [
    ("CERT", "Certificate"),
    ("ASSOC", "Associate"),
    ("BACH", "Bachelor"),
    ("MAST", "Master"),
]
DEPARTMENTS = [
    ("MATH", "Mathematics", "UG"), ("ENGL", "English", "UG"), ("BIOL", "Biology", "UG"),
    ("CHEM", "Chemistry", "UG"), ("HIST", "History", "UG"), ("PSYC", "Psychology", "UG"),
    ("BUS", "Business", "GR"), ("CS", "Computer Science", "UG"), ("ART", "Art", "UG"),
    ("NURS", "Nursing", "GR"), ("EDUC", "Education", "GR"), ("MUS", "Music", "CE"),
]  # fmt: skip
COURSE_TOPICS = [
    "Foundations", "Principles", "Methods", "Seminar", "Survey", "Workshop", "Theory",
    "Practicum", "Studio", "Topics", "Research", "Analysis",
]  # fmt: skip
HOLD_TYPES = [
    ("REG", "Registration hold", True, False),
    ("BUS", "Business office hold", True, False),
    ("LIB", "Library fines", False, False),
    ("ADV", "See your advisor", False, True),
    ("TRN", "Missing transcript", False, True),
]
TRANSACTION_CODES = [
    ("TUIT", "Tuition", "charge", False),
    ("FEES", "Student fees", "charge", False),
    ("HOUS", "Housing", "charge", False),
    ("PAY", "Payment", "payment", False),
    ("PELL", "Pell grant", "financial_aid", True),
    ("LOAN", "Direct loan", "financial_aid", True),
    ("SCH", "Institutional scholarship", "financial_aid", False),
    ("REF", "Refund to student", "refund", False),
]
IMMUNIZATIONS = [("MMR", None), ("HEPB", None), ("TDAP", 3650), ("MENACWY", 1825), ("FLU", 365)]
GROUPS = [
    ("REGISTRAR", "Registrar's office", "Enrollment, grades and schedule changes"),
    ("BURSAR", "Bursar's office", "Balances, payments and credit balances"),
    ("ADVISING", "Advising", "Attendance, holds and at-risk students"),
    ("HEALTH", "Health services", "Immunizations"),
    ("ACADEMIC_AFFAIRS", "Academic affairs", "Faculty grading and attendance records"),
    ("ADMISSIONS", "Admissions", "New people and transfer credit"),
]
TRANSFER_SCHOOLS = [
    "Riverside Community College", "State University", "Lakeside College",
    "Northern Technical Institute", "Valley Community College",
]  # fmt: skip
CREDIT_PER_HOUR = Decimal("350.00")
SIS_ID_PREFIX = {"student": "S", "faculty": "F", "staff": "E", "prospect": "P", "alumni": "A"}


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


class _Pools:
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


def generate(
    today: date | None = None, *, seed: int = DEFAULT_SEED, size: DemoSize | None = None
) -> DemoData:
    """Every demo row for a school whose current term is in progress on ``today``."""
    today = today or datetime.now(UTC).date()
    size = size or DemoSize()
    rng = random.Random(seed)
    pools = _Pools(seed)
    data = DemoData(today=today, seed=seed)
    midnight = datetime.combine(today, time(0, 0), UTC)

    def at(days_ago: float) -> datetime:
        """A timestamp ``days_ago`` before today's midnight UTC, on a whole second."""
        return midnight - timedelta(seconds=round(days_ago * 86400))

    data.add(
        "divisions", ["id", "code", "name"], [(i, c, n) for i, (c, n) in enumerate(DIVISIONS, 1)]
    )
    data.add(
        "campuses", ["id", "code", "name"], [(i, c, n) for i, (c, n) in enumerate(CAMPUSES, 1)]
    )
    data.add("levels", ["id", "code", "name"], [(i, c, n) for i, (c, n) in enumerate(LEVELS, 1)])
    division_id = {c: i for i, (c, _) in enumerate(DIVISIONS, 1)}
    data.add(
        "departments",
        ["id", "code", "name", "division_id"],
        [(i, c, n, division_id[d]) for i, (c, n, d) in enumerate(DEPARTMENTS, 1)],
    )

    # People ------------------------------------------------------------------------------
    people: list[tuple[Any, ...]] = []
    statuses: list[tuple[Any, ...]] = []
    external: list[tuple[Any, ...]] = []
    emails: list[tuple[Any, ...]] = []
    phones: list[tuple[Any, ...]] = []
    addresses: list[tuple[Any, ...]] = []
    indicators: list[tuple[Any, ...]] = []
    by_status: dict[str, list[int]] = defaultdict(list)
    birth: dict[int, date] = {}
    used_logins: set[str] = set()
    plan = (
        [("student", size.students), ("faculty", size.faculty), ("staff", size.staff), ("prospect", size.prospects), ("alumni", size.alumni)]
    )  # fmt: skip
    pid = 0
    for status, n in plan:
        for _ in range(n):
            pid += 1
            gender = rng.choices(["female", "male", "nonbinary", "undisclosed"], [49, 47, 2, 2])[0]
            first = rng.choice(pools.female if gender == "female" else pools.male)
            last = rng.choice(pools.last)
            middle = rng.choice(pools.female + pools.male) if rng.random() < 0.4 else None
            if status in ("student", "prospect"):
                # About 3% of students are minors (16 or 17), most are 18-24, some older.
                age_days = (
                    rng.randint(16 * 365 + 10, 18 * 365 - 10)
                    if rng.random() < 0.03
                    else rng.randint(18 * 365, 24 * 365)
                    if rng.random() < 0.8
                    else rng.randint(24 * 365, 50 * 365)
                )
            elif status == "alumni":
                age_days = rng.randint(22 * 365, 60 * 365)
            else:
                age_days = rng.randint(26 * 365, 68 * 365)
            born = today - timedelta(days=age_days)
            birth[pid] = born
            login = f"{first[0]}{last}".lower().replace("'", "").replace(" ", "")
            while login in used_logins:
                login = f"{login[: len(first[0]) + len(last)]}{rng.randint(2, 999)}"
            used_logins.add(login)
            dept = rng.randint(1, len(DEPARTMENTS))
            division = division_id[DEPARTMENTS[dept - 1][2]]
            level = (
                None
                if status in ("faculty", "staff")
                else (4 if division == 2 else rng.choices([1, 2, 3], [10, 25, 65])[0])
            )
            campus = rng.choices([1, 2, 3], [60, 25, 15])[0]
            since_days = rng.randint(40, 1500) if status != "prospect" else rng.randint(0, 200)
            created = at(since_days + rng.random())
            people.append(
                (pid, f"{SIS_ID_PREFIX[status]}{pid:06d}", first, middle, last, None,
                 born, gender, status, division, campus, dept, level, login, created, created)
            )  # fmt: skip
            statuses.append((pid, status, created.date(), None, created))
            by_status[status].append(pid)
            if status in ("student", "faculty", "staff", "alumni"):
                external.append((pid, "lms" if status != "alumni" else "alumni", f"u{pid:07d}"))
            if status in ("faculty", "staff"):
                external.append((pid, "hr", f"EMP{pid:05d}"))
            if status in ("student", "faculty", "staff"):
                emails.append((pid, "school", f"{login}@{SCHOOL_DOMAIN}", True))
                if rng.random() < 0.6:
                    emails.append(
                        (pid, "personal", f"{login}{rng.randint(1, 99)}@example.com", False)
                    )
            else:
                emails.append((pid, "personal", f"{login}@example.org", True))
            cell = f"555-{rng.randint(200, 999):03d}-{rng.randint(0, 9999):04d}"
            phones.append((pid, "cell", cell, rng.random() < 0.8, True))
            if rng.random() < 0.3:
                home = f"555-{rng.randint(200, 999):03d}-{rng.randint(0, 9999):04d}"
                phones.append((pid, "home", home, False, False))
            city, region, postal = rng.choice(pools.places)
            addresses.append(
                (pid, "home", True, rng.choice(pools.streets), None, city, region, postal, "US")
            )
            if status == "student" and age_days < 18 * 365:
                turns_18 = _years_later(born, 18)
                indicators.append((pid, "minor", created.date(), turns_18, created))
    # A few people were added in the last days: "Status Addition" and "Minor Status" find them.
    recent = rng.sample(by_status["student"], 12) + rng.sample(by_status["prospect"], 8)
    recent_at = {p: at(rng.uniform(0.05, 3)) for p in recent}
    statuses = [
        (p, s, recent_at[p].date(), e, recent_at[p]) if p in recent_at else (p, s, d, e, a)
        for p, s, d, e, a in statuses
    ]
    people = [
        (*row[:14], recent_at[row[0]], recent_at[row[0]]) if row[0] in recent_at else row
        for row in people
    ]
    for i, (p, ind, _, ends, _) in enumerate(indicators):
        if p in recent_at:
            indicators[i] = (p, ind, recent_at[p].date(), ends, recent_at[p])
    data.add(
        "people",
        ["id", "sis_id", "first_name", "middle_name", "last_name", "preferred_name", "birth_date",
         "gender", "status", "division_id", "campus_id", "department_id", "level_id", "login_id",
         "created_at", "updated_at"],
        people,
    )  # fmt: skip
    data.add("person_external_ids", ["person_id", "system", "value"], external)
    data.add(
        "person_statuses", ["person_id", "status", "starts_on", "ends_on", "added_at"], statuses
    )
    data.add(
        "person_indicators",
        ["person_id", "indicator", "starts_on", "ends_on", "added_at"],
        indicators,
    )
    data.add(
        "addresses",
        [
            "person_id",
            "kind",
            "preferred",
            "line1",
            "line2",
            "city",
            "region",
            "postal_code",
            "country",
        ],
        addresses,
    )
    data.add("emails", ["person_id", "kind", "address", "is_primary"], emails)
    data.add("phones", ["person_id", "kind", "number", "sms_ok", "is_primary"], phones)
    students = by_status["student"]
    faculty = by_status["faculty"]
    staff = by_status["staff"]

    # Terms, courses, sections --------------------------------------------------------------
    terms = [
        (1, "PREV", "Previous term", today - timedelta(days=200), today - timedelta(days=75)),
        (2, "CURR", "Current term", today - timedelta(days=45), today + timedelta(days=60)),
        (3, "NEXT", "Next term", today + timedelta(days=90), today + timedelta(days=200)),
    ]
    data.add(
        "terms",
        ["id", "code", "name", "starts_on", "ends_on", "add_drop_ends_on", "full_time_credits"],
        [(i, c, n, s, e, s + timedelta(days=14), Decimal(12)) for i, c, n, s, e in terms],
    )
    courses = []
    cid = 0
    for dept, (code, name, div) in enumerate(DEPARTMENTS, 1):
        for number in rng.sample(range(100, 500), 10):
            cid += 1
            credits = Decimal(rng.choices([3, 4, 1], [80, 15, 5])[0])
            level = 4 if div == "GR" else 3
            topic = rng.choice(COURSE_TOPICS)
            courses.append(
                (cid, f"{code}{number}", f"{name}: {topic} {number // 100}", credits, dept, level)
            )
    data.add("courses", ["id", "code", "title", "credits", "department_id", "level_id"], courses)

    sections: list[tuple[Any, ...]] = []
    meetings: list[tuple[Any, ...]] = []
    section_info: dict[int, dict[str, Any]] = {}
    sid = 0
    for term_id, _, _, t_start, t_end in terms:
        for course in courses:
            for n in range(rng.choices([1, 2, 3], [60, 30, 10])[0]):
                sid += 1
                start, end = t_start, t_end
                if term_id == 2:
                    kind = rng.random()
                    if kind < 0.12:  # first half of the term: already over
                        end = today - timedelta(days=rng.randint(3, 20))
                    elif kind < 0.20:  # late start: begins soon
                        start = today + timedelta(days=rng.randint(1, 10))
                days = rng.choice(["MWF", "TR", "MW"])
                capacity = rng.choice([15, 20, 25, 30, 35, 40])
                division = division_id[DEPARTMENTS[course[4] - 1][2]]
                campus = rng.choices([1, 2, 3], [60, 25, 15])[0]
                sections.append(
                    [sid, course[0], term_id, f"{n + 1:02d}", division, campus, rng.choice(faculty),
                     start, end, days, capacity, 0, campus != 3 or rng.random() < 0.3]
                )  # fmt: skip
                section_info[sid] = {
                    "term": term_id, "credits": course[3], "start": start, "end": end,
                    "capacity": capacity, "row": len(sections) - 1, "attendance": sections[-1][12],
                }  # fmt: skip
                weekday = {"M": 0, "T": 1, "W": 2, "R": 3, "F": 4}
                on = {weekday[d] for d in days}
                day = start
                while day <= end:
                    if day.weekday() in on:
                        meetings.append((sid, day))
                    day += timedelta(days=1)

    # Enrollments, waitlists, schedule changes, grades, attendance --------------------------
    enrollments: list[tuple[Any, ...]] = []
    grades: list[tuple[Any, ...]] = []
    changes: list[tuple[Any, ...]] = []
    waitlist: list[tuple[Any, ...]] = []
    enrolled_count: dict[int, int] = defaultdict(int)
    waiting: dict[int, int] = defaultdict(int)
    by_term: dict[int, list[int]] = defaultdict(list)
    for s, info in section_info.items():
        by_term[info["term"]].append(s)
    current: dict[int, list[int]] = defaultdict(list)  # student -> current-term enrollment ids
    term_credits: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    eid = 0
    for student in students:
        for term_id in (1, 2, 3):
            if term_id == 3 and rng.random() < 0.4:
                continue
            wanted = rng.choices([2, 3, 4, 5], [10, 25, 45, 20])[0]
            for s in rng.sample(by_term[term_id], wanted + 2):
                if wanted == 0:
                    break
                info = section_info[s]
                if enrolled_count[s] >= info["capacity"]:
                    if term_id != 1 and waiting[s] < 6:
                        waiting[s] += 1
                        waitlist.append(
                            (s, student, waiting[s], at(rng.uniform(1, 20)), "waiting", None)
                        )
                    continue
                wanted -= 1
                eid += 1
                registered = datetime.combine(info["start"], time(0, 0), UTC) - timedelta(
                    days=rng.randint(5, 60)
                )
                status, dropped_at, withdrawn_on = "enrolled", None, None
                if term_id == 1:
                    status = "completed"
                elif term_id == 2 and rng.random() < 0.05:
                    status = "dropped" if rng.random() < 0.5 else "withdrawn"
                elif info["end"] < today:
                    status = "completed"
                if status in ("enrolled", "completed"):
                    enrolled_count[s] += 1
                    term_credits[(student, term_id)] += info["credits"]
                confirmed = registered + timedelta(days=1) if rng.random() < 0.7 else None
                if status == "dropped":
                    dropped_at = at(rng.uniform(0, 12))
                if status == "withdrawn":
                    withdrawn_on = today - timedelta(days=rng.randint(0, 10))
                enrollments.append(
                    (eid, student, s, status, info["credits"], registered, confirmed, dropped_at,
                     withdrawn_on, registered)
                )  # fmt: skip
                if term_id == 2:
                    current[student].append(eid)
                if term_id == 2 and status in ("dropped", "withdrawn"):
                    when = dropped_at or datetime.combine(withdrawn_on, time(15, 0), UTC)  # type: ignore[arg-type]
                    changes.append(
                        (
                            student,
                            s,
                            2,
                            "drop" if status == "dropped" else "withdraw",
                            info["credits"],
                            when,
                        )
                    )
                elif term_id == 2 and registered > at(14):
                    changes.append((student, s, 2, "add", info["credits"], registered))
                if info["end"] < today:
                    grades.append(_grade(rng, eid, info, today, status))
    # Schedule-change rows carry the term's credits before and after each change, in order.
    change_rows: list[tuple[Any, ...]] = []
    for student, s, term_id, action, credits, when in sorted(changes, key=lambda c: c[5]):
        after = term_credits[(student, term_id)]
        # Rebuild "before" from "after": an add raised the load, a drop or withdrawal lowered it.
        before = after - credits if action == "add" else after + credits
        change_rows.append((student, s, term_id, action, credits, before, after, when, "demo"))
    # A few students dropped below full time this week: the Below Full-Time Status notifier's rows.
    for student in rng.sample(students, 40):
        load = term_credits[(student, 2)]
        if Decimal(12) <= load < Decimal(15):
            enrolled_here = [e for e in current[student] if enrollments[e - 1][3] == "enrolled"]
            if not enrolled_here:
                continue
            e = enrollments[enrolled_here[0] - 1]
            s = e[2]
            enrollments[e[0] - 1] = (*e[:3], "dropped", *e[4:7], at(rng.uniform(0.1, 2)), *e[8:])
            enrolled_count[s] -= 1
            term_credits[(student, 2)] = load - e[4]
            change_rows.append(
                (student, s, 2, "drop", e[4], load, load - e[4], enrollments[e[0] - 1][7], "demo")
            )
    for s, count in enrolled_count.items():
        sections[section_info[s]["row"]][11] = count
    data.add(
        "sections",
        ["id", "course_id", "term_id", "section_code", "division_id", "campus_id", "lead_faculty_id",
         "starts_on", "ends_on", "meeting_days", "capacity", "enrolled", "attendance_required"],
        [tuple(row) for row in sections],
    )  # fmt: skip
    data.add("section_meetings", ["section_id", "meets_on"], meetings)
    data.add(
        "enrollments",
        ["id", "person_id", "section_id", "status", "credits", "registered_at", "confirmed_at",
         "dropped_at", "withdrawn_on", "updated_at"],
        enrollments,
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
        grades,
    )  # fmt: skip
    # Some full sections opened a seat since the waitlist formed: Auto Waitlist Enroll fills them.
    for s in rng.sample(sorted(waiting), min(len(waiting), 10)):
        sections[section_info[s]["row"]][10] += rng.randint(1, 2)
    data.tables["sections"] = (data.tables["sections"][0], [tuple(row) for row in sections])
    data.add(
        "waitlist",
        ["section_id", "person_id", "position", "added_at", "state", "resolved_at"],
        waitlist,
    )

    # Attendance for current-term enrollments, on the meetings already held. About 3% of the
    # meetings that require attendance have none recorded (the No Attendance Record notifier).
    attendance: list[tuple[Any, ...]] = []
    roster: dict[int, list[int]] = defaultdict(list)
    enrollment_by_id = {e[0]: e for e in enrollments}
    for student, eids in current.items():
        for e in eids:
            row = enrollment_by_id[e]
            if row[3] in ("enrolled", "completed"):
                roster[row[2]].append(student)
    propensity = {s: rng.choice([0.01, 0.03, 0.05, 0.08, 0.15, 0.25]) for s in students}
    for s, day in meetings:
        info = section_info[s]
        if info["term"] != 2 or day >= today or not info["attendance"] or rng.random() < 0.03:
            continue
        teacher = sections[info["row"]][6]
        stamp = datetime.combine(day, time(17, 0), UTC)
        for student in roster[s]:
            r = rng.random()
            p = propensity[student]
            mark = "absent" if r < p else "tardy" if r < p * 1.6 else "present"
            attendance.append((s, student, day, mark, stamp, teacher))
    data.add(
        "attendance",
        ["section_id", "person_id", "meets_on", "mark", "recorded_at", "recorded_by"],
        attendance,
    )

    # Holds -------------------------------------------------------------------------------
    data.add("hold_types", ["code", "name", "blocks_registration", "user_defined"], HOLD_TYPES)
    holds = []
    for student in rng.sample(students, len(students) // 12):
        code = rng.choices([h[0] for h in HOLD_TYPES], [30, 25, 15, 15, 15])[0]
        starts = today - timedelta(days=rng.randint(0, 60))
        holds.append(
            (
                student,
                code,
                f"{dict((h[0], h[1]) for h in HOLD_TYPES)[code]}",
                starts,
                None,
                at((today - starts).days),
            )
        )
    data.add(
        "holds", ["person_id", "hold_type", "reason", "starts_on", "ends_on", "added_at"], holds
    )

    # Money -------------------------------------------------------------------------------
    data.add("transaction_codes", ["code", "name", "kind", "post_award"], TRANSACTION_CODES)
    transactions = []
    term_start = terms[1][3]
    for student in students:
        load = term_credits[(student, 2)]
        if not load:
            continue
        tuition = load * CREDIT_PER_HOUR
        charges = tuition + Decimal("250.00") + (Decimal("2400.00") if rng.random() < 0.3 else 0)
        transactions.append(
            (student, 2, "TUIT", tuition, term_start - timedelta(days=20), "Tuition")
        )
        transactions.append(
            (student, 2, "FEES", Decimal("250.00"), term_start - timedelta(days=20), "Student fees")
        )
        if charges > tuition + 250:
            transactions.append(
                (student, 2, "HOUS", Decimal("2400.00"), term_start - timedelta(days=20), "Housing")
            )
        outcome = rng.random()
        paid = (
            charges
            if outcome < 0.55
            else charges * Decimal(rng.uniform(0.2, 0.9))
            if outcome < 0.92
            else charges + Decimal(rng.randint(100, 1500))
        )
        paid = paid.quantize(Decimal("0.01"))
        aid = (
            (paid * Decimal("0.5")).quantize(Decimal("0.01")) if rng.random() < 0.4 else Decimal(0)
        )
        if aid:
            code = rng.choice(["PELL", "LOAN"])
            transactions.append(
                (
                    student,
                    2,
                    code,
                    -aid,
                    today - timedelta(days=rng.randint(1, 40)),
                    "Aid disbursement",
                )
            )
        transactions.append(
            (
                student,
                2,
                "PAY",
                -(paid - aid),
                today - timedelta(days=rng.randint(1, 40)),
                "Payment",
            )
        )
    data.add(
        "transactions",
        ["person_id", "term_id", "code", "amount", "posted_on", "description"],
        [(p, t, c, a, d, desc) for p, t, c, a, d, desc in transactions],
    )

    # Health, transfer credit ---------------------------------------------------------------
    immunizations = []
    for student in students:
        for kind, valid_days in rng.sample(IMMUNIZATIONS, rng.randint(2, 4)):
            given = today - timedelta(days=rng.randint(30, 4000))
            expires = given + timedelta(days=valid_days) if valid_days else None
            immunizations.append((student, kind, given, expires))
    data.add("immunizations", ["person_id", "kind", "administered_on", "expires_on"], immunizations)
    transfers = []
    for student in rng.sample(students, len(students) // 10):
        for _ in range(rng.randint(1, 3)):
            dept = rng.choice(DEPARTMENTS)
            accepted = today - timedelta(days=rng.randint(0, 90))
            transfers.append(
                (student, rng.choice(TRANSFER_SCHOOLS), f"{dept[0]}{rng.randint(100, 299)}",
                 f"{dept[1]} {rng.choice(COURSE_TOPICS)}", Decimal(rng.choice([3, 3, 4])),
                 rng.choice(["A", "A-", "B+", "B", "B-", "C", "P"]), accepted, at((today - accepted).days - 0.5))
            )  # fmt: skip
    data.add(
        "transfer_credits",
        [
            "person_id",
            "institution",
            "course_code",
            "course_title",
            "credits",
            "grade",
            "accepted_on",
            "added_at",
        ],
        transfers,
    )

    # Notification groups, registration appointments, timed e-mails --------------------------
    data.add(
        "notification_groups",
        ["id", "code", "name", "description"],
        [(i, c, n, d) for i, (c, n, d) in enumerate(GROUPS, 1)],
    )
    members = []
    for gid in range(1, len(GROUPS) + 1):
        for person in rng.sample(staff, 3):
            members.append((gid, person, True, rng.random() < 0.5))
    data.add(
        "notification_group_members", ["group_id", "person_id", "by_email", "by_reminder"], members
    )
    appointments = []
    next_start = terms[2][3]
    for student in students:
        if (student, 3) in term_credits or rng.random() < 0.5:
            starts = datetime.combine(
                next_start - timedelta(days=rng.randint(20, 60)), time(8, 0), UTC
            )
            appointments.append((student, 3, starts, starts + timedelta(days=14)))
    data.add(
        "registration_appointments", ["person_id", "term_id", "starts_at", "ends_at"], appointments
    )
    data.add(
        "email_activities",
        ["code", "subject", "body_text", "body_html", "send_on", "statuses"],
        [
            ("ADVISING_WEEK", "Advising week starts today",
             "Dear {{ first_name }},\n\nadvising week starts today: book a slot with your advisor.\n",
             None, today, ["student"]),
            ("FAFSA", "Renew your FAFSA",
             "Dear {{ first_name }},\n\nthe FAFSA for next year is open. Renew it before the deadline.\n",
             None, today + timedelta(days=7), ["student"]),
        ],
    )  # fmt: skip
    return data


def _years_later(day: date, years: int) -> date:
    """The same day ``years`` later; 29 February becomes the 28th, as PostgreSQL intervals do."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _grade(
    rng: random.Random, eid: int, info: dict[str, Any], today: date, status: str
) -> tuple[Any, ...]:
    """A grade row for an enrollment whose section has ended: mostly final and official, some not."""
    ended_days = (today - info["end"]).days
    if status in ("dropped", "withdrawn"):
        return (
            eid,
            "W",
            True,
            False,
            None,
            True,
            None,
            datetime.combine(info["end"], time(0, 0), UTC),
        )
    roll = rng.random()
    letter = rng.choice(["A", "A-", "B+", "B", "B-", "C+", "C", "D", "F"])
    posted = datetime.combine(info["end"], time(12, 0), UTC) + timedelta(days=rng.randint(1, 5))
    touched = datetime.combine(info["end"], time(9, 0), UTC)
    if ended_days > 60:
        if roll < 0.03:
            return (
                eid,
                "I",
                True,
                True,
                info["end"] + timedelta(days=rng.randint(60, 150)),
                True,
                posted,
                posted,
            )
        return (eid, letter, roll > 0.02, False, None, True, posted, posted)
    if roll < 0.15:
        return (eid, None, False, False, None, False, None, touched)  # blank
    if roll < 0.35:
        return (
            eid,
            letter,
            False,
            False,
            None,
            False,
            None,
            touched,
        )  # entered, not final, not official
    if roll < 0.40:
        return (eid, "I", False, True, info["end"] + timedelta(days=90), True, posted, posted)
    return (eid, letter, True, False, None, True, posted, posted)


_SEQUENCED = (
    "divisions", "campuses", "levels", "departments", "people", "terms", "courses", "sections",
    "enrollments", "notification_groups",
)  # fmt: skip


async def load(
    conn: asyncpg.Connection, data: DemoData, *, replace: bool = False
) -> dict[str, int]:
    """COPY the demo rows into the ``sis`` schema in one transaction; returns rows per table.

    Refuses a database that already holds people unless ``replace`` (which empties every
    ``sis`` table first), so demo data never mixes with a school's own.
    """
    from ..errors import InvalidInput

    async with conn.transaction():
        if replace:
            names = [f"sis.{t}" for t in reversed(data.tables)] + ["sis.reminders"]
            await conn.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
        elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sis.people)"):
            raise InvalidInput(
                "sis.people",
                "the SIS schema already holds people",
                "an empty SIS, or replace=True (--replace)",
            )
        counts = {}
        for table, (columns, rows) in data.tables.items():
            await conn.copy_records_to_table(
                table, schema_name="sis", columns=columns, records=rows
            )
            counts[table] = len(rows)
        for table in _SEQUENCED:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('sis.{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM sis.{table}), 0) + 1, false)"
            )
    return counts


async def install(
    url: str,
    *,
    today: date | None = None,
    seed: int = DEFAULT_SEED,
    size: DemoSize | None = None,
    replace: bool = False,
) -> dict[str, int]:
    """Migrate the ``sis`` schema at ``url`` and load the demo school into it."""
    from . import migrate

    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await migrate(pool)
        data = await asyncio.to_thread(generate, today, seed=seed, size=size)
        async with pool.acquire() as conn:
            return await load(conn, data, replace=replace)
    finally:
        await pool.close()


async def _migrate_only(url: str) -> list[int]:
    from . import migrate

    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        return await migrate(pool)
    finally:
        await pool.close()


def main() -> None:
    from ..settings import get_settings

    parser = argparse.ArgumentParser(
        description="Load the demo school into the reference SIS schema."
    )
    parser.add_argument("--students", type=int, default=DemoSize.students)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--today", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    parser.add_argument("--replace", action="store_true", help="empty the sis tables first")
    parser.add_argument(
        "--schema-only", action="store_true", help="create or upgrade the sis schema, load nothing"
    )
    args = parser.parse_args()
    url = get_settings().database_url
    if args.schema_only:
        print(f"sis migrations applied: {asyncio.run(_migrate_only(url)) or 'none (up to date)'}")
        return
    counts = asyncio.run(
        install(
            url, today=args.today, seed=args.seed,
            size=DemoSize(students=args.students), replace=args.replace,
        )
    )  # fmt: skip
    print(", ".join(f"{table} {n}" for table, n in counts.items()))


if __name__ == "__main__":
    main()
