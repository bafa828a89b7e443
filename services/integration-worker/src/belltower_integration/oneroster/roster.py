"""The OneRoster records of the chosen terms, read from the reference SIS schema.

orgs: the institution (``district``, the root), its campuses (``school``) and departments
(``department``); academicSessions: the terms (``term``); courses: the catalog courses offered in
them; classes: their sections (``scheduled``, at the section's campus); users: the students
enrolled and the sections' lead faculty; roles: a primary ``student`` or ``teacher`` role at the
person's campus (and, when asked, their guardians as users with a ``parent``, ``guardian`` or
``relative`` role, linked both ways by ``agentSourcedIds``); enrollments: students (enrolled, audit, completed; dropped and withdrawn are
left out) and lead faculty (``primary``); demographics, when asked: birth date and sex.

Each record is its sourcedId and the values after ``dateLastModified``, in the binding's order.
sourcedIds are built from the SIS's own codes, so they are the same in every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from belltower.errors import JobFailed

from .binding import FILES
from .delta import Records, Values

TERMS_SQL = """
SELECT id, code, name, starts_on, ends_on FROM sis.terms
 WHERE CASE WHEN cardinality($1::text[]) > 0 THEN code = ANY($1)
            ELSE ends_on >= $2 AND starts_on <= $2 + $3::int END
 ORDER BY starts_on, code
"""
ORGS_SQL = """
SELECT 'campus' AS kind, code, name FROM sis.campuses
UNION ALL SELECT 'dept', code, name FROM sis.departments
ORDER BY 1, 2
"""
SECTIONS_SQL = """
SELECT s.id, c.code AS course_code, c.title, d.code AS dept_code, t.code AS term_code,
       s.section_code, s.starts_on, s.ends_on, k.code AS campus_code, f.sis_id AS faculty_sis_id
  FROM sis.sections s
  JOIN sis.courses c ON c.id = s.course_id
  JOIN sis.terms t ON t.id = s.term_id
  LEFT JOIN sis.departments d ON d.id = c.department_id
  LEFT JOIN sis.campuses k ON k.id = s.campus_id
  LEFT JOIN sis.people f ON f.id = s.lead_faculty_id
 WHERE s.term_id = ANY($1::bigint[])
"""
ENROLLMENTS_SQL = """
SELECT e.section_id, p.sis_id
  FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id
 WHERE e.section_id = ANY($1::bigint[]) AND e.status IN ('enrolled', 'audit', 'completed')
"""
PEOPLE_SQL = """
SELECT p.sis_id, coalesce(p.login_id, p.sis_id) AS username, p.first_name, p.middle_name,
       p.last_name, p.preferred_name, p.birth_date, p.gender, k.code AS campus_code,
       (SELECT address FROM sis.emails m WHERE m.person_id = p.id
         ORDER BY m.is_primary DESC, m.kind = 'school' DESC, m.id LIMIT 1) AS email,
       (SELECT number FROM sis.phones f WHERE f.person_id = p.id AND f.kind = 'cell' AND f.sms_ok
         ORDER BY f.is_primary DESC, f.id LIMIT 1) AS sms,
       (SELECT number FROM sis.phones f WHERE f.person_id = p.id
         ORDER BY f.is_primary DESC, f.id LIMIT 1) AS phone
  FROM sis.people p LEFT JOIN sis.campuses k ON k.id = p.campus_id
 WHERE p.sis_id = ANY($1::text[])
"""

GUARDIANS_SQL = """
SELECT p.sis_id AS student, k.code AS campus_code, g.sis_id, g.first_name, g.last_name, g.email,
       g.phone, l.relationship
  FROM sis.student_guardians l
  JOIN sis.guardians g ON g.id = l.guardian_id
  JOIN sis.people p ON p.id = l.student_id
  LEFT JOIN sis.campuses k ON k.id = p.campus_id
 WHERE p.sis_id = ANY($1::text[])
 ORDER BY g.sis_id, l.is_primary DESC, p.sis_id
"""

SEX = {"female": "female", "male": "male", "nonbinary": "other", "undisclosed": "unspecified"}


@dataclass(frozen=True)
class Institution:
    sourced_id: str
    name: str


def campus_id(code: str) -> str:
    return f"campus-{code}"


def class_id(s: Any) -> str:
    return f"class-{s['term_code']}-{s['course_code']}-{s['section_code']}"


def _values(file: str, **fields: object) -> Values:
    """The values after dateLastModified, in the binding's order; absent fields are blank."""
    names = [c.name for c in FILES[file]][3:]
    unknown = set(fields) - set(names)
    if unknown:
        raise KeyError(f"{file} has no column {', '.join(sorted(unknown))}")
    return tuple("" if fields.get(n) is None else str(fields[n]) for n in names)


class _Builder:
    def __init__(self, root: Institution) -> None:
        self.root = root
        self.records: Records = {name: {} for name in FILES}

    def add(self, file: str, sourced_id: str, **fields: object) -> None:
        """Add a record; the same sourcedId twice must be the same record (a course offered in
        two terms), else two SIS records collide (a guardian's SIS id equal to a person's)."""
        values = _values(file, **fields)
        earlier = self.records[file].setdefault(sourced_id, values)
        if earlier != values:
            raise JobFailed(
                f"{file}.csv: two different records would have the sourcedId {sourced_id!r}; "
                "give them distinct SIS ids (people.sis_id, guardians.sis_id)"
            )

    def orgs(self, rows: list[Any]) -> None:
        self.add("orgs", self.root.sourced_id, name=self.root.name, type="district")
        for r in rows:
            kind, ident = ("school", campus_id(r["code"])) if r["kind"] == "campus" else (
                "department", f"dept-{r['code']}")  # fmt: skip
            self.add("orgs", ident, name=r["name"], type=kind, identifier=r["code"],
                     parentSourcedId=self.root.sourced_id)  # fmt: skip

    def terms(self, rows: list[Any]) -> None:
        for t in rows:
            self.add("academicSessions", f"term-{t['code']}", title=t["name"], type="term",
                     startDate=t["starts_on"], endDate=t["ends_on"],
                     schoolYear=t["ends_on"].year)  # fmt: skip

    def sections(self, rows: list[Any]) -> None:
        for s in rows:
            course = f"course-{s['course_code']}"
            owner = f"dept-{s['dept_code']}" if s["dept_code"] else self.root.sourced_id
            self.add("courses", course, title=s["title"], courseCode=s["course_code"],
                     orgSourcedId=owner)  # fmt: skip
            self.add("classes", class_id(s), title=f"{s['course_code']} {s['section_code']}: {s['title']}",
                     courseSourcedId=course, classCode=s["section_code"], classType="scheduled",
                     schoolSourcedId=self.school(s["campus_code"]),
                     termSourcedIds=f"term-{s['term_code']}")  # fmt: skip
            if s["faculty_sis_id"]:
                self.enroll(s, s["faculty_sis_id"], "teacher")

    def enroll(self, s: Any, sis_id: str, role: str) -> None:
        self.add("enrollments", f"{class_id(s)}-{sis_id}-{role}", classSourcedId=class_id(s),
                 schoolSourcedId=self.school(s["campus_code"]), userSourcedId=sis_id, role=role,
                 primary="true" if role == "teacher" else "false",
                 beginDate=s["starts_on"], endDate=s["ends_on"])  # fmt: skip

    def roles(self, sid: str, roles: list[str], org: str) -> None:
        for n, role in enumerate(roles):
            self.add("roles", f"{sid}-{role}", userSourcedId=sid,
                     roleType="primary" if n == 0 else "secondary", role=role,
                     orgSourcedId=org)  # fmt: skip

    def guardians(self, rows: list[Any]) -> dict[str, list[str]]:
        """Guardian users and roles; returns each student's guardians (their agents)."""
        agents: dict[str, list[str]] = {}
        by_guardian: dict[str, list[Any]] = {}
        for r in rows:
            by_guardian.setdefault(r["sis_id"], []).append(r)
            agents.setdefault(r["student"], []).append(r["sis_id"])
        for gid, links in by_guardian.items():
            g = links[0]
            org = self.school(g["campus_code"])
            self.add("users", gid, enabledUser="true", username=gid, givenName=g["first_name"],
                     familyName=g["last_name"], identifier=gid, email=g["email"],
                     phone=g["phone"], agentSourcedIds=",".join(sorted({r["student"] for r in links})),
                     primaryOrgSourcedId=org)  # fmt: skip
            self.roles(gid, list(dict.fromkeys(r["relationship"] for r in links)), org)
        return {student: sorted(ids) for student, ids in agents.items()}

    def school(self, campus_code: str | None) -> str:
        return campus_id(campus_code) if campus_code else self.root.sourced_id

    def people(self, rows: list[Any], roles: dict[str, list[str]], demographics: bool,
               agents: dict[str, list[str]]) -> None:  # fmt: skip
        for p in rows:
            sid = p["sis_id"]
            org = self.school(p["campus_code"])
            self.add("users", sid, enabledUser="true", username=p["username"],
                     givenName=p["first_name"], familyName=p["last_name"],
                     middleName=p["middle_name"], identifier=sid, email=p["email"], sms=p["sms"],
                     phone=p["phone"], agentSourcedIds=",".join(agents.get(sid, [])),
                     preferredGivenName=p["preferred_name"], primaryOrgSourcedId=org)  # fmt: skip
            self.roles(sid, roles[sid], org)
            if demographics:
                self.add(
                    "demographics", sid, birthDate=p["birth_date"], sex=SEX.get(p["gender"] or "")
                )


async def read_terms(conn: Any, codes: list[str], today: date, upcoming_days: int) -> list[Any]:
    return list(await conn.fetch(TERMS_SQL, codes, today, upcoming_days))


async def build(conn: Any, root: Institution, terms: list[Any], *, demographics: bool,
                guardians: bool = False) -> Records:  # fmt: skip
    """Every record of the set for ``terms``, read in the caller's transaction."""
    b = _Builder(root)
    b.orgs(list(await conn.fetch(ORGS_SQL)))
    b.terms(terms)
    sections = list(await conn.fetch(SECTIONS_SQL, [t["id"] for t in terms]))
    b.sections(sections)
    by_id = {s["id"]: s for s in sections}
    roles: dict[str, list[str]] = {}
    for s in sections:
        if s["faculty_sis_id"]:
            _role(roles, s["faculty_sis_id"], "teacher")
    for e in await conn.fetch(ENROLLMENTS_SQL, list(by_id)):
        b.enroll(by_id[e["section_id"]], e["sis_id"], "student")
        _role(roles, e["sis_id"], "student")
    students = sorted(sid for sid, held in roles.items() if "student" in held)
    agents = b.guardians(list(await conn.fetch(GUARDIANS_SQL, students))) if guardians else {}
    b.people(list(await conn.fetch(PEOPLE_SQL, sorted(roles))), roles, demographics, agents)
    if not demographics:
        del b.records["demographics"]
    return b.records


def _role(roles: dict[str, list[str]], sis_id: str, role: str) -> None:
    held = roles.setdefault(sis_id, [])
    if role not in held:
        held.append(role)
