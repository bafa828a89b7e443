"""What the SIS sends to an Ed-Fi ODS/API (Data Standard 5), shaped record by record.

Each resource's body follows the Data Standard 5 resource model of ODS/API v7: references by
the referenced record's natural key (``studentReference: {studentUniqueId}``,
``sectionReference: {localCourseCode, schoolId, schoolYear, sectionIdentifier, sessionName}``)
and descriptors as URIs (``uri://ed-fi.org/TermDescriptor#Semester``). ``NATURAL_KEYS`` names
the fields that identify a record of each resource, so a record is known across runs by them
(a POST with the same natural key is an update, the Ed-Fi upsert).

Schools and descriptors are the district's Ed-Fi setup (the seed: "Ed-Fi Setup ... must take
place prior to running this job"); the job's parameters say which Ed-Fi school a campus is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

RESOURCES = (
    "sessions", "courses", "courseOfferings", "sections", "gradingPeriods", "students",
    "studentSchoolAssociations", "studentSectionAssociations",
    "studentSchoolAttendanceEvents", "studentSectionAttendanceEvents", "grades",
)  # fmt: skip
"""What this job sends; the order they go in is the server's dependency document's."""

NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "sessions": ("schoolReference.schoolId", "schoolYearTypeReference.schoolYear", "sessionName"),
    "courses": ("courseCode", "educationOrganizationReference.educationOrganizationId"),
    "courseOfferings": ("localCourseCode", "schoolReference.schoolId",
                        "sessionReference.schoolYear", "sessionReference.sessionName"),
    "sections": ("courseOfferingReference.localCourseCode", "courseOfferingReference.schoolId",
                 "courseOfferingReference.schoolYear", "sectionIdentifier",
                 "courseOfferingReference.sessionName"),
    "gradingPeriods": ("gradingPeriodDescriptor", "gradingPeriodName", "schoolReference.schoolId",
                       "schoolYearTypeReference.schoolYear"),
    "students": ("studentUniqueId",),
    "studentSchoolAssociations": ("entryDate", "schoolReference.schoolId",
                                  "studentReference.studentUniqueId"),
    "studentSectionAssociations": ("beginDate", "sectionReference", "studentReference.studentUniqueId"),
    "studentSchoolAttendanceEvents": ("attendanceEventCategoryDescriptor", "eventDate",
                                      "sessionReference", "studentReference.studentUniqueId"),
    "studentSectionAttendanceEvents": ("attendanceEventCategoryDescriptor", "eventDate",
                                       "sectionReference", "studentReference.studentUniqueId"),
    "grades": ("gradeTypeDescriptor", "gradingPeriodReference",
               "studentSectionAssociationReference"),
}  # fmt: skip

MARKS = {"absent": "Unexcused Absence", "excused": "Excused Absence", "tardy": "Tardy",
         "present": "In Attendance"}  # fmt: skip
DAY_STATUS = {"absent": "Unexcused Absence", "excused": "Excused Absence",
              "present": "In Attendance"}  # fmt: skip


def pick(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def natural_key(resource: str, record: dict[str, Any]) -> str:
    """The record's natural key as one stable string (JSON of its key fields)."""
    return json.dumps(
        [pick(record, f) for f in NATURAL_KEYS[resource]], sort_keys=True, separators=(",", ":"),
        default=str,
    )  # fmt: skip


def school_year(starts_on: date) -> int:
    """Ed-Fi's school year is the calendar year it ends in: a term from August 2025 is 2026."""
    return starts_on.year + 1 if starts_on.month >= 7 else starts_on.year


@dataclass(frozen=True)
class Vocabulary:
    """The descriptor values a district's Ed-Fi setup holds, and its namespace."""

    namespace: str = "uri://ed-fi.org"
    term: str = "Semester"
    grading_period: str = "End of Year"
    grade_type: str = "Final"
    grade_level: str = "Ungraded"
    course_id_system: str = "LEA course code"

    def uri(self, descriptor: str, code: str) -> str:
        return f"{self.namespace}/{descriptor}Descriptor#{code}"


@dataclass
class Shaped:
    """Records by resource and natural key, and SIS rows left out with why."""

    records: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {r: {} for r in RESOURCES}
    )
    left_out: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, resource: str, record: dict[str, Any]) -> None:
        self.records[resource][natural_key(resource, record)] = record


@dataclass(frozen=True)
class Session:
    school_id: int
    year: int
    name: str

    def ref(self) -> dict[str, Any]:
        return {"schoolId": self.school_id, "schoolYear": self.year, "sessionName": self.name}


Rows = dict[str, list[dict[str, Any]]]


def shape(
    rows: Rows, schools: dict[str | None, int], words: Vocabulary, send_present: bool
) -> Shaped:
    """Shape the SIS rows read by the job (``terms``, ``sections``, ``people``, ``enrollments``,
    ``attendance``, ``days``, ``grades``) into Ed-Fi records. ``schools`` maps a campus code
    (None: any other) to an Ed-Fi schoolId."""
    shaper = _Shaper(rows, schools, words)
    shaper.sessions()
    shaper.sections()
    shaper.students()
    shaper.associations()
    shaper.attendance(MARKS if send_present else {k: v for k, v in MARKS.items() if k != "present"})
    shaper.days(
        DAY_STATUS if send_present else {k: v for k, v in DAY_STATUS.items() if k != "present"}
    )
    shaper.grades()
    return shaper.out


class _Shaper:
    def __init__(self, rows: Rows, schools: dict[str | None, int], words: Vocabulary) -> None:
        self.rows, self.schools, self.words = rows, schools, words
        self.out = Shaped()
        self.terms = {t["id"]: t for t in rows["terms"]}
        self.people = {p["id"]: p for p in rows["people"]}
        self.by_term: dict[tuple[int, int], Session] = {}
        self.section_refs: dict[int, dict[str, Any]] = {}
        self.known: set[int] = set()
        self.ssa: dict[int, dict[str, Any]] = {}

    def school(self, campus: str | None) -> int:
        return self.schools.get(campus, self.schools[None])

    def who(self, person_id: int) -> dict[str, Any]:
        return {"studentUniqueId": self.people[person_id]["sis_id"]}

    def sessions(self) -> None:
        """One session and one grading period per term and school."""
        for sec in self.rows["sections"]:
            t = self.terms[sec["term_id"]]
            s = Session(self.school(sec["campus"]), school_year(t["starts_on"]), t["code"])
            self.by_term[(sec["term_id"], s.school_id)] = s
        by_start = sorted(self.terms.values(), key=lambda t: t["starts_on"])
        sequence = {t["id"]: n for n, t in enumerate(by_start, 1)}
        w = self.words
        for (term_id, _), s in self.by_term.items():
            t = self.terms[term_id]
            dates = {"beginDate": t["starts_on"].isoformat(), "endDate": t["ends_on"].isoformat(),
                     "totalInstructionalDays": t["days"], "schoolReference": {"schoolId": s.school_id},
                     "schoolYearTypeReference": {"schoolYear": s.year}}  # fmt: skip
            self.out.add(
                "sessions",
                {"sessionName": s.name, "termDescriptor": w.uri("Term", w.term), **dates},
            )
            self.out.add("gradingPeriods", {"gradingPeriodDescriptor": w.uri("GradingPeriod", w.grading_period),
                                            "gradingPeriodName": s.name, "periodSequence": sequence[term_id], **dates})  # fmt: skip

    def sections(self) -> None:
        """Courses, their offerings in each session, and the sections of those."""
        w = self.words
        for sec in self.rows["sections"]:
            s = self.by_term[(sec["term_id"], self.school(sec["campus"]))]
            code = sec["course_code"]
            self.out.add("courses", {
                "courseCode": code, "courseTitle": sec["course_title"], "numberOfParts": 1,
                "educationOrganizationReference": {"educationOrganizationId": s.school_id},
                "identificationCodes": [{"identificationCode": code, "courseIdentificationSystemDescriptor":
                                         w.uri("CourseIdentificationSystem", w.course_id_system)}],
            })  # fmt: skip
            self.out.add("courseOfferings", {
                "localCourseCode": code, "localCourseTitle": sec["course_title"],
                "schoolReference": {"schoolId": s.school_id}, "sessionReference": s.ref(),
                "courseReference": {"courseCode": code, "educationOrganizationId": s.school_id},
            })  # fmt: skip
            ref = {"localCourseCode": code, **s.ref(),
                   "sectionIdentifier": f"{code}-{s.name}-{sec['section_code']}"}  # fmt: skip
            self.section_refs[sec["id"]] = {"ref": ref, "session": s, "starts_on": sec["starts_on"]}
            offering = {
                k: ref[k] for k in ("localCourseCode", "schoolId", "schoolYear", "sessionName")
            }
            self.out.add("sections", {
                "sectionIdentifier": ref["sectionIdentifier"], "courseOfferingReference": offering,
                "sectionName": f"{sec['course_title']} {sec['section_code']}",
                "availableCredits": float(sec["credits"]),
            })  # fmt: skip

    def students(self) -> None:
        for p in self.people.values():
            if p["birth_date"] is None:
                self.out.left_out.append(
                    ("students", p["sis_id"], "no birth date (Ed-Fi requires birthDate)")
                )
                continue
            self.known.add(p["id"])
            student = {"studentUniqueId": p["sis_id"], "firstName": p["first_name"],
                       "lastSurname": p["last_name"], "birthDate": p["birth_date"].isoformat()}  # fmt: skip
            if p["middle_name"]:
                student["middleName"] = p["middle_name"]
            self.out.add("students", student)

    def associations(self) -> None:
        """Section associations per enrolment; a school association per student and school,
        entered on the earliest section start."""
        entries: dict[tuple[int, int], date] = {}
        for e in self.rows["enrollments"]:
            if e["person_id"] not in self.known or e["section_id"] not in self.section_refs:
                continue
            sec = self.section_refs[e["section_id"]]
            key = (e["person_id"], sec["session"].school_id)
            entries[key] = min(entries.get(key, sec["starts_on"]), sec["starts_on"])
            assoc: dict[str, Any] = {"beginDate": sec["starts_on"].isoformat(), "sectionReference": sec["ref"],
                                     "studentReference": self.who(e["person_id"])}  # fmt: skip
            if e["ended_on"] is not None:
                assoc["endDate"] = max(e["ended_on"], sec["starts_on"]).isoformat()
            self.out.add("studentSectionAssociations", assoc)
            self.ssa[e["id"]] = {**sec["ref"], "beginDate": assoc["beginDate"],
                                 "studentUniqueId": self.people[e["person_id"]]["sis_id"]}  # fmt: skip
        w = self.words
        for (person_id, school_id), entered in sorted(entries.items()):
            level = self.people[person_id]["grade_level"] or w.grade_level
            self.out.add("studentSchoolAssociations", {
                "entryDate": entered.isoformat(), "schoolReference": {"schoolId": school_id},
                "studentReference": self.who(person_id),
                "entryGradeLevelDescriptor": w.uri("GradeLevel", level),
            })  # fmt: skip

    def attendance(self, marks: dict[str, str]) -> None:
        for a in self.rows["attendance"]:
            if (
                a["person_id"] in self.known
                and a["section_id"] in self.section_refs
                and a["mark"] in marks
            ):
                self.out.add("studentSectionAttendanceEvents", {
                    "attendanceEventCategoryDescriptor": self.words.uri("AttendanceEventCategory", marks[a["mark"]]),
                    "eventDate": a["meets_on"].isoformat(), "studentReference": self.who(a["person_id"]),
                    "sectionReference": self.section_refs[a["section_id"]]["ref"],
                })  # fmt: skip

    def days(self, marks: dict[str, str]) -> None:
        for d in self.rows["days"]:
            if d["person_id"] not in self.known or d["status"] not in marks:
                continue
            campus = self.people[d["person_id"]]["campus"]
            s = self.by_term.get((d["term_id"], self.school(campus)))
            if s is None:
                continue
            self.out.add("studentSchoolAttendanceEvents", {
                "attendanceEventCategoryDescriptor": self.words.uri("AttendanceEventCategory", marks[d["status"]]),
                "eventDate": d["on_date"].isoformat(), "schoolReference": {"schoolId": s.school_id},
                "sessionReference": s.ref(), "studentReference": self.who(d["person_id"]),
            })  # fmt: skip

    def grades(self) -> None:
        w = self.words
        for g in self.rows["grades"]:
            ref = self.ssa.get(g["enrollment_id"])
            if ref is None:
                continue
            period = {"gradingPeriodDescriptor": w.uri("GradingPeriod", w.grading_period),
                      "gradingPeriodName": ref["sessionName"], "schoolId": ref["schoolId"],
                      "schoolYear": ref["schoolYear"]}  # fmt: skip
            self.out.add("grades", {
                "gradeTypeDescriptor": w.uri("GradeType", w.grade_type), "letterGradeEarned": g["grade"],
                "gradingPeriodReference": period, "studentSectionAssociationReference": ref,
            })  # fmt: skip


def order(
    dependencies: Iterable[tuple[str, int]], wanted: Iterable[str]
) -> tuple[list[str], list[str]]:
    """The resources of ``wanted`` in the server's order (by ``order``, then name), and those the
    server does not publish (which cannot be sent)."""
    ranks = {
        path.removeprefix("/ed-fi/"): rank
        for path, rank in dependencies
        if path.startswith("/ed-fi/")
    }
    known = sorted((r for r in wanted if r in ranks), key=lambda r: (ranks[r], r))
    return known, [r for r in wanted if r not in ranks]
