"""The offices' own records (migration 0056): activities, application checklists, forms,
sign-in credentials, alumni employment, ISIRs, breadcrumbs and prospect inquiry cards."""

from __future__ import annotations

from datetime import date, timedelta

from .model import Draw, Row

ACTIVITY_TYPES = [
    ("CALL", "Phone call"), ("VISIT", "Campus visit"), ("TOUR", "Campus tour"),
    ("ADVISE", "Advising appointment"), ("EMAIL", "E-mail follow-up"),
]  # fmt: skip
CHECKLIST = ["Application form", "Transcript", "Recommendation letter", "Application fee", "Essay"]
FORMS = [(1, "HOUSING", "Housing application"), (2, "PARKING", "Parking permit request"),
         (3, "CHANGE_MAJOR", "Change of major")]  # fmt: skip
EMPLOYERS = [
    "Acme Health",
    "Riverside Schools",
    "Northwind Traders",
    "Contoso Bank",
    "City of Lakeside",
]
JOB_TITLES = ["Analyst", "Teacher", "Nurse", "Engineer", "Coordinator", "Accountant"]
PAGES = ["/admin/student", "/admin/billing", "/admin/schedule", "/admin/grades", "/admin/reports"]
INTERESTS = ["Nursing", "Business", "Computer Science", "Education", "Undeclared"]


def add_office_records(draw: Draw, people: dict[str, list[int]]) -> None:
    """A few weeks of each office's records, a handful of them from the last day."""
    _activities(draw, people["prospect"] + people["student"])
    _checklists(draw, people["prospect"])
    _forms(draw, people["student"])
    _credentials(draw, people["student"] + people["faculty"] + people["staff"])
    _employment(draw, people["alumni"])
    _isirs(draw, people["student"])
    _breadcrumbs(draw, people["staff"])
    _prospect_requests(draw)


def _activities(draw: Draw, people: list[int]) -> None:
    rng = draw.rng
    draw.data.add("activity_types", ["code", "name"], ACTIVITY_TYPES)
    rows: list[Row] = []
    for person in rng.sample(people, len(people) // 10):
        days = rng.uniform(0, 30)
        code = rng.choice(ACTIVITY_TYPES)[0]
        rows.append(
            (person, code, draw.today - timedelta(days=int(days)), "", "admissions", draw.at(days))
        )
    draw.data.add(
        "activities",
        ["person_id", "activity_type", "occurred_on", "notes", "added_by", "added_at"],
        rows,
    )


def _checklists(draw: Draw, prospects: list[int]) -> None:
    """Half the prospects are applying; each item is received with a chance of two in three."""
    rng = draw.rng
    rows: list[Row] = []
    for person in rng.sample(prospects, len(prospects) // 2):
        for item in CHECKLIST[: rng.randint(3, 5)]:
            received = draw.at(rng.uniform(0, 40)) if rng.random() < 2 / 3 else None
            rows.append((person, item, item != "Essay", received))
    draw.data.add(
        "application_checklist_items", ["person_id", "item", "required", "received_at"], rows
    )


def _forms(draw: Draw, students: list[int]) -> None:
    rng = draw.rng
    draw.data.add("forms", ["id", "code", "title"], FORMS)
    rows = [
        (rng.choice(FORMS)[0], s, draw.at(rng.uniform(0, 20)))
        for s in rng.sample(students, len(students) // 50)
    ]
    draw.data.add("form_submissions", ["form_id", "person_id", "submitted_at"], rows)


def _credentials(draw: Draw, people: list[int]) -> None:
    """Everyone has a password, set up to a year ago; one in three also a PIN."""
    rng = draw.rng
    rows: list[Row] = []
    for person in people:
        rows.append((person, "password", draw.at(rng.uniform(0, 365)), None))
        if rng.random() < 1 / 3:
            rows.append((person, "pin", draw.at(rng.uniform(0, 730)), None))
    draw.data.add("login_credentials", ["person_id", "kind", "set_at", "expired_at"], rows)


def _employment(draw: Draw, alumni: list[int]) -> None:
    """A third of the alumni keep an employment record; the newest are not yet confirmed."""
    rng = draw.rng
    rows: list[Row] = []
    for person in rng.sample(alumni, len(alumni) // 3):
        days = rng.uniform(0, 200)
        confirmed = draw.at(days - 3) if days > 10 else None
        starts = draw.today - timedelta(days=rng.randint(30, 1500))
        rows.append((person, rng.choice(EMPLOYERS), rng.choice(JOB_TITLES), starts, True,
                     draw.at(days), confirmed, "career services" if confirmed else None))  # fmt: skip
    draw.data.add(
        "employment_records",
        ["person_id", "employer", "job_title", "starts_on", "entered_by_self", "added_at",
         "confirmed_at", "confirmed_by"],
        rows,
    )  # fmt: skip


def _award_year(today: date) -> str:
    start = today.year if today.month >= 7 else today.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def _isirs(draw: Draw, students: list[int]) -> None:
    """A third of the students have an ISIR (one in five selected for verification), and a
    dozen unmatched ISIRs were saved for a later import."""
    rng, year = draw.rng, _award_year(draw.today)
    rows: list[Row] = []
    for person in rng.sample(students, len(students) // 3):
        days = rng.uniform(0, 90)
        selected = "Y" if rng.random() < 0.2 else "N"
        flag = rng.choice(["V1", "V4", "V5"]) if selected == "Y" else None
        processed = draw.today - timedelta(days=int(days) + 2)
        rows.append((person, year, 1, "AB", "Student", str(person), selected, flag, processed,
                     draw.at(days), None))  # fmt: skip
    for n in range(12):
        days = rng.uniform(0, 90)
        last = draw.pools.last[n]
        rows.append((None, year, 1, last[:2].upper(), last, "Unmatched", "N", None,
                     draw.today - timedelta(days=int(days) + 2), draw.at(days), draw.at(days)))  # fmt: skip
    draw.data.add(
        "isirs",
        ["person_id", "award_year", "transaction_number", "name_id", "student_last_name",
         "student_first_name", "selected_for_verification", "verification_tracking_flag",
         "transaction_process_date", "imported_at", "saved_at"],
        rows,
    )  # fmt: skip


def _breadcrumbs(draw: Draw, staff: list[int]) -> None:
    """Sixty days of pages visited by a dozen staff members."""
    rng = draw.rng
    rows = [(person, rng.choice(PAGES), draw.at(rng.uniform(0, 60)))
            for person in rng.sample(staff, min(12, len(staff))) for _ in range(40)]  # fmt: skip
    draw.data.add("page_visits", ["person_id", "page", "visited_at"], rows)


def _prospect_requests(draw: Draw) -> None:
    """Inquiry cards of the last day, waiting for the Prospect Import Notifier; one has no e-mail."""
    rng, pools = draw.rng, draw.pools
    rows: list[Row] = []
    for n in range(8):
        first, last = rng.choice(pools.female + pools.male), rng.choice(pools.last)
        email = "" if n == 7 else f"{first.lower()}.{last.lower()}{n}@inquiry.example"
        rows.append((first, last, email, rng.choice(INTERESTS), draw.at(rng.uniform(0, 1))))
    draw.data.add(
        "prospect_requests", ["first_name", "last_name", "email", "interest", "received_at"], rows
    )
