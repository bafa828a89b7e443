"""The CSV Binding 1.2.1 as data: each file's columns in order, which are required, their type,
vocabulary and what they reference. The builder writes these headers and the validator checks
against them, so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["id", "text", "status", "datetime", "date", "year", "bool", "enum", "ref", "refs"]


@dataclass(frozen=True)
class Column:
    name: str
    required: bool = False
    kind: Kind = "text"
    vocabulary: frozenset[str] = frozenset()
    target: str = ""  # the file a ref/refs column points into


def _col(name: str, kind: Kind = "text", *, req: bool = False, vocab: tuple[str, ...] = (),
         target: str = "") -> Column:  # fmt: skip
    return Column(name, req, kind, frozenset(vocab), target)


STATUS = ("active", "tobedeleted")
ORG_TYPES = ("department", "school", "district", "local", "state", "national")
SESSION_TYPES = ("gradingPeriod", "semester", "schoolYear", "term")
CLASS_TYPES = ("homeroom", "scheduled")
ROLE_TYPES = ("primary", "secondary")
ROLES = (
    "aide", "counselor", "districtAdministrator", "guardian", "parent", "principal", "proctor",
    "relative", "siteAdministrator", "student", "systemAdministrator", "teacher",
)  # fmt: skip
ENROLLMENT_ROLES = ("administrator", "proctor", "student", "teacher")
SEXES = ("male", "female", "unspecified", "other")
MODES = ("absent", "bulk", "delta")

_HEAD = (_col("sourcedId", "id", req=True), _col("status", "status", vocab=STATUS),
         _col("dateLastModified", "datetime"))  # fmt: skip

FILES: dict[str, tuple[Column, ...]] = {
    "orgs": (
        *_HEAD,
        _col("name", req=True),
        _col("type", "enum", req=True, vocab=ORG_TYPES),
        _col("identifier"),
        _col("parentSourcedId", "ref", target="orgs"),
    ),
    "academicSessions": (
        *_HEAD,
        _col("title", req=True),
        _col("type", "enum", req=True, vocab=SESSION_TYPES),
        _col("startDate", "date", req=True),
        _col("endDate", "date", req=True),
        _col("parentSourcedId", "ref", target="academicSessions"),
        _col("schoolYear", "year", req=True),
    ),
    "courses": (
        *_HEAD,
        _col("schoolYearSourcedId", "ref", target="academicSessions"),
        _col("title", req=True),
        _col("courseCode"),
        _col("grades"),
        _col("orgSourcedId", "ref", req=True, target="orgs"),
        _col("subjects"),
        _col("subjectCodes"),
    ),
    "classes": (
        *_HEAD,
        _col("title", req=True),
        _col("grades"),
        _col("courseSourcedId", "ref", req=True, target="courses"),
        _col("classCode"),
        _col("classType", "enum", req=True, vocab=CLASS_TYPES),
        _col("location"),
        _col("schoolSourcedId", "ref", req=True, target="orgs"),
        _col("termSourcedIds", "refs", req=True, target="academicSessions"),
        _col("subjects"),
        _col("subjectCodes"),
        _col("periods"),
    ),
    "users": (
        *_HEAD,
        _col("enabledUser", "bool", req=True),
        _col("username", req=True),
        _col("userIds"),
        _col("givenName", req=True),
        _col("familyName", req=True),
        _col("middleName"),
        _col("identifier"),
        _col("email"),
        _col("sms"),
        _col("phone"),
        _col("agentSourcedIds", "refs", target="users"),
        _col("grades"),
        _col("password"),
        _col("userMasterIdentifier"),
        _col("resourceSourcedIds"),
        _col("preferredGivenName"),
        _col("preferredMiddleName"),
        _col("preferredFamilyName"),
        _col("primaryOrgSourcedId", "ref", target="orgs"),
        _col("pronouns"),
    ),
    "roles": (
        *_HEAD,
        _col("userSourcedId", "ref", req=True, target="users"),
        _col("roleType", "enum", req=True, vocab=ROLE_TYPES),
        _col("role", "enum", req=True, vocab=ROLES),
        _col("beginDate", "date"),
        _col("endDate", "date"),
        _col("orgSourcedId", "ref", req=True, target="orgs"),
        _col("userProfileSourcedId"),
    ),
    "enrollments": (
        *_HEAD,
        _col("classSourcedId", "ref", req=True, target="classes"),
        _col("schoolSourcedId", "ref", req=True, target="orgs"),
        _col("userSourcedId", "ref", req=True, target="users"),
        _col("role", "enum", req=True, vocab=ENROLLMENT_ROLES),
        _col("primary", "bool"),
        _col("beginDate", "date"),
        _col("endDate", "date"),
    ),
    "demographics": (
        _col("sourcedId", "ref", req=True, target="users"),
        *_HEAD[1:],
        _col("birthDate", "date"),
        _col("sex", "enum", vocab=SEXES),
        *(
            _col(name, "bool")
            for name in (
                "americanIndianOrAlaskaNative",
                "asian",
                "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander",
                "white",
                "demographicRaceTwoOrMoreRaces",
                "hispanicOrLatinoEthnicity",
            )
        ),
        _col("countryOfBirthCode"),
        _col("stateOfBirthAbbreviation"),
        _col("cityOfBirth"),
        _col("publicSchoolResidenceStatus"),
    ),
}

# Every file the binding names, for the manifest's file.<name> lines (absent when not sent).
MANIFEST_FILES = (
    "academicSessions", "categories", "classes", "classResources", "courses", "courseResources",
    "demographics", "enrollments", "lineItemLearningObjectiveIds", "lineItems",
    "lineItemScoreScales", "orgs", "resources", "resultLearningObjectiveIds", "results",
    "resultScoreScales", "roles", "scoreScales", "userProfiles", "userResources", "users",
)  # fmt: skip
MANIFEST_HEADER = ("propertyName", "value")
MANIFEST_VERSION = "1.0"
ONEROSTER_VERSION = "1.2"


def header(name: str) -> list[str]:
    return [c.name for c in FILES[name]]
