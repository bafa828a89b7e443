"""The demo school's people: students, faculty, staff, prospects and alumni, with their contacts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from .codes import DEPARTMENTS, DIVISION_ID, SCHOOL_DOMAIN, SIS_ID_PREFIX
from .model import DemoSize, Draw, Row


@dataclass
class _Rows:
    people: list[Row] = field(default_factory=list)
    statuses: list[Row] = field(default_factory=list)
    external: list[Row] = field(default_factory=list)
    emails: list[Row] = field(default_factory=list)
    phones: list[Row] = field(default_factory=list)
    addresses: list[Row] = field(default_factory=list)
    indicators: list[Row] = field(default_factory=list)
    by_status: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    logins: set[str] = field(default_factory=set)


def add_people(draw: Draw, size: DemoSize) -> dict[str, list[int]]:
    """Every person and their ids, statuses, contacts and indicators; returns ids by status."""
    rows = _Rows()
    plan = (
        [("student", size.students), ("faculty", size.faculty), ("staff", size.staff), ("prospect", size.prospects), ("alumni", size.alumni)]
    )  # fmt: skip
    pid = 0
    for status, n in plan:
        for _ in range(n):
            pid += 1
            _add_person(draw, rows, pid, status)
    _recently_added(draw, rows)
    data = draw.data
    data.add(
        "people",
        ["id", "sis_id", "first_name", "middle_name", "last_name", "preferred_name", "birth_date",
         "gender", "status", "division_id", "campus_id", "department_id", "level_id", "login_id",
         "created_at", "updated_at"],
        rows.people,
    )  # fmt: skip
    data.add("person_external_ids", ["person_id", "system", "value"], rows.external)
    data.add(
        "person_statuses",
        ["person_id", "status", "starts_on", "ends_on", "added_at"],
        rows.statuses,
    )
    data.add(
        "person_indicators",
        ["person_id", "indicator", "starts_on", "ends_on", "added_at"],
        rows.indicators,
    )
    data.add(
        "addresses",
        ["person_id", "kind", "preferred", "line1", "line2", "city", "region", "postal_code",
         "country"],
        rows.addresses,
    )  # fmt: skip
    data.add("emails", ["person_id", "kind", "address", "is_primary"], rows.emails)
    data.add("phones", ["person_id", "kind", "number", "sms_ok", "is_primary"], rows.phones)
    return rows.by_status


def _age_days(draw: Draw, status: str) -> int:
    rng = draw.rng
    if status in ("student", "prospect"):
        # About 3% of students are minors (16 or 17), most are 18-24, some older.
        return (
            rng.randint(16 * 365 + 10, 18 * 365 - 10)
            if rng.random() < 0.03
            else rng.randint(18 * 365, 24 * 365)
            if rng.random() < 0.8
            else rng.randint(24 * 365, 50 * 365)
        )
    if status == "alumni":
        return rng.randint(22 * 365, 60 * 365)
    return rng.randint(26 * 365, 68 * 365)


def _add_person(draw: Draw, rows: _Rows, pid: int, status: str) -> None:
    rng, pools = draw.rng, draw.pools
    gender = rng.choices(["female", "male", "nonbinary", "undisclosed"], [49, 47, 2, 2])[0]
    first = rng.choice(pools.female if gender == "female" else pools.male)
    last = rng.choice(pools.last)
    middle = rng.choice(pools.female + pools.male) if rng.random() < 0.4 else None
    age_days = _age_days(draw, status)
    born = draw.today - timedelta(days=age_days)
    login = f"{first[0]}{last}".lower().replace("'", "").replace(" ", "")
    while login in rows.logins:
        login = f"{login[: len(first[0]) + len(last)]}{rng.randint(2, 999)}"
    rows.logins.add(login)
    dept = rng.randint(1, len(DEPARTMENTS))
    division = DIVISION_ID[DEPARTMENTS[dept - 1][2]]
    level = (
        None
        if status in ("faculty", "staff")
        else (4 if division == 2 else rng.choices([1, 2, 3], [10, 25, 65])[0])
    )
    campus = rng.choices([1, 2, 3], [60, 25, 15])[0]
    since_days = rng.randint(40, 1500) if status != "prospect" else rng.randint(0, 200)
    created = draw.at(since_days + rng.random())
    rows.people.append(
        (pid, f"{SIS_ID_PREFIX[status]}{pid:06d}", first, middle, last, None,
         born, gender, status, division, campus, dept, level, login, created, created)
    )  # fmt: skip
    rows.statuses.append((pid, status, created.date(), None, created))
    rows.by_status[status].append(pid)
    if status in ("student", "faculty", "staff", "alumni"):
        rows.external.append((pid, "lms" if status != "alumni" else "alumni", f"u{pid:07d}"))
    if status in ("faculty", "staff"):
        rows.external.append((pid, "hr", f"EMP{pid:05d}"))
    _add_contacts(draw, rows, pid, status, login)
    if status == "student" and age_days < 18 * 365:
        turns_18 = _years_later(born, 18)
        rows.indicators.append((pid, "minor", created.date(), turns_18, created))


def _add_contacts(draw: Draw, rows: _Rows, pid: int, status: str, login: str) -> None:
    rng, pools = draw.rng, draw.pools
    if status in ("student", "faculty", "staff"):
        rows.emails.append((pid, "school", f"{login}@{SCHOOL_DOMAIN}", True))
        if rng.random() < 0.6:
            rows.emails.append((pid, "personal", f"{login}{rng.randint(1, 99)}@example.com", False))
    else:
        rows.emails.append((pid, "personal", f"{login}@example.org", True))
    cell = f"555-{rng.randint(200, 999):03d}-{rng.randint(0, 9999):04d}"
    rows.phones.append((pid, "cell", cell, rng.random() < 0.8, True))
    if rng.random() < 0.3:
        home = f"555-{rng.randint(200, 999):03d}-{rng.randint(0, 9999):04d}"
        rows.phones.append((pid, "home", home, False, False))
    city, region, postal = rng.choice(pools.places)
    rows.addresses.append(
        (pid, "home", True, rng.choice(pools.streets), None, city, region, postal, "US")
    )


def _recently_added(draw: Draw, rows: _Rows) -> None:
    """A few people were added in the last days: "Status Addition" and "Minor Status" find them."""
    rng = draw.rng
    recent = rng.sample(rows.by_status["student"], 12) + rng.sample(rows.by_status["prospect"], 8)
    recent_at = {p: draw.at(rng.uniform(0.05, 3)) for p in recent}
    rows.statuses = [
        (p, s, recent_at[p].date(), e, recent_at[p]) if p in recent_at else (p, s, d, e, a)
        for p, s, d, e, a in rows.statuses
    ]
    rows.people = [
        (*row[:14], recent_at[row[0]], recent_at[row[0]]) if row[0] in recent_at else row
        for row in rows.people
    ]
    for i, (p, ind, _, ends, _) in enumerate(rows.indicators):
        if p in recent_at:
            rows.indicators[i] = (p, ind, recent_at[p].date(), ends, recent_at[p])


def _years_later(day: date, years: int) -> date:
    """The same day ``years`` later; 29 February becomes the 28th, as PostgreSQL intervals do."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
