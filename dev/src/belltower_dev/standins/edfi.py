"""A stand-in for an Ed-Fi ODS/API v7 (Data Standard 5), built to its published contract.

OAuth 2 client credentials at ``POST /oauth/token`` (HTTP basic auth with the API key and
secret, or ``client_id``/``client_secret`` in the form; ``grant_type=client_credentials``), then
a bearer token on every call; a token refused is a 401 problem document. The dependency
document at ``GET /metadata/data/v3/dependencies`` is computed from the references between the
resources it serves (a resource's order is one more than the highest it refers to), the way
the ODS/API derives it from its model. ``POST /data/v3/ed-fi/{resource}`` is the upsert:
required fields are checked (400 ``urn:ed-fi:api:bad-request:data-validation-failed`` with
``validationErrors``), descriptors must be known ones (400), every ``...Reference`` must name a
record that exists (409 ``urn:ed-fi:api:conflict:unresolved-reference``), then a record with
the same natural key is updated (200) or a new one made (201, with its Location). Schools,
school years and the district's descriptors are the Ed-Fi setup, loaded when it starts.

Faults on demand: ``expire_after`` refuses the bearer token once after that many calls (the
client must fetch another), ``throttle_first`` answers that many calls 429 with Retry-After,
``fail_first`` that many 503, ``fail_from`` 503 (with Retry-After) to every call after that
many, ``refuse`` a 400 for records a test picks, and ``orders``
overrides what the dependency document publishes for some resources.
"""

from __future__ import annotations

import base64
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

NS = "uri://ed-fi.org"
# Each resource's natural key: (name a reference uses, where the record holds it).
KEYS: dict[str, list[tuple[str, str]]] = {
    "schools": [("schoolId", "schoolId")],
    "schoolYearTypes": [("schoolYear", "schoolYear")],
    "sessions": [("schoolId", "schoolReference.schoolId"), ("schoolYear", "schoolYearTypeReference.schoolYear"),
                 ("sessionName", "sessionName")],
    "courses": [("courseCode", "courseCode"),
                ("educationOrganizationId", "educationOrganizationReference.educationOrganizationId")],
    "courseOfferings": [("localCourseCode", "localCourseCode"), ("schoolId", "schoolReference.schoolId"),
                        ("schoolYear", "sessionReference.schoolYear"), ("sessionName", "sessionReference.sessionName")],
    "sections": [("localCourseCode", "courseOfferingReference.localCourseCode"),
                 ("schoolId", "courseOfferingReference.schoolId"), ("schoolYear", "courseOfferingReference.schoolYear"),
                 ("sectionIdentifier", "sectionIdentifier"), ("sessionName", "courseOfferingReference.sessionName")],
    "gradingPeriods": [("gradingPeriodDescriptor", "gradingPeriodDescriptor"), ("gradingPeriodName", "gradingPeriodName"),
                       ("schoolId", "schoolReference.schoolId"), ("schoolYear", "schoolYearTypeReference.schoolYear")],
    "students": [("studentUniqueId", "studentUniqueId")],
    "studentSchoolAssociations": [("entryDate", "entryDate"), ("schoolId", "schoolReference.schoolId"),
                                  ("studentUniqueId", "studentReference.studentUniqueId")],
    "studentSectionAssociations": [("beginDate", "beginDate"), *[(n, f"sectionReference.{n}") for n in (
        "localCourseCode", "schoolId", "schoolYear", "sectionIdentifier", "sessionName")],
        ("studentUniqueId", "studentReference.studentUniqueId")],
    "studentSchoolAttendanceEvents": [("attendanceEventCategoryDescriptor", "attendanceEventCategoryDescriptor"),
                                      ("eventDate", "eventDate"), ("sessionReference", "sessionReference"),
                                      ("studentUniqueId", "studentReference.studentUniqueId")],
    "studentSectionAttendanceEvents": [("attendanceEventCategoryDescriptor", "attendanceEventCategoryDescriptor"),
                                       ("eventDate", "eventDate"), ("sectionReference", "sectionReference"),
                                       ("studentUniqueId", "studentReference.studentUniqueId")],
    "grades": [("gradeTypeDescriptor", "gradeTypeDescriptor"), ("gradingPeriodReference", "gradingPeriodReference"),
               ("studentSectionAssociationReference", "studentSectionAssociationReference")],
}  # fmt: skip
REFERENCES = {
    "schoolReference": "schools", "educationOrganizationReference": "schools",
    "schoolYearTypeReference": "schoolYearTypes", "sessionReference": "sessions",
    "courseReference": "courses", "courseOfferingReference": "courseOfferings",
    "sectionReference": "sections", "studentReference": "students",
    "gradingPeriodReference": "gradingPeriods",
    "studentSectionAssociationReference": "studentSectionAssociations",
}  # fmt: skip
REFERRED_AS = {"educationOrganizationReference": {"educationOrganizationId": "schoolId"}}
REQUIRED: dict[str, tuple[str, ...]] = {
    "sessions": ("sessionName", "schoolReference", "schoolYearTypeReference", "beginDate", "endDate",
                 "termDescriptor", "totalInstructionalDays"),
    "courses": ("courseCode", "courseTitle", "numberOfParts", "educationOrganizationReference", "identificationCodes"),
    "courseOfferings": ("localCourseCode", "schoolReference", "sessionReference", "courseReference"),
    "sections": ("sectionIdentifier", "courseOfferingReference"),
    "gradingPeriods": ("gradingPeriodDescriptor", "gradingPeriodName", "beginDate", "endDate",
                       "totalInstructionalDays", "schoolReference", "schoolYearTypeReference"),
    "students": ("studentUniqueId", "firstName", "lastSurname", "birthDate"),
    "studentSchoolAssociations": ("studentReference", "schoolReference", "entryDate", "entryGradeLevelDescriptor"),
    "studentSectionAssociations": ("beginDate", "sectionReference", "studentReference"),
    "studentSchoolAttendanceEvents": ("attendanceEventCategoryDescriptor", "eventDate", "schoolReference",
                                      "sessionReference", "studentReference"),
    "studentSectionAttendanceEvents": ("attendanceEventCategoryDescriptor", "eventDate", "sectionReference",
                                       "studentReference"),
    "grades": ("gradeTypeDescriptor", "gradingPeriodReference", "studentSectionAssociationReference"),
}  # fmt: skip
DESCRIPTORS = {
    f"{NS}/{kind}Descriptor#{code}"
    for kind, codes in {
        "Term": ["Semester", "Fall Semester", "Spring Semester", "Year Round"],
        "GradingPeriod": ["End of Year", "First Semester", "Second Semester"],
        "GradeType": ["Final", "Grading Period", "Semester"],
        "GradeLevel": ["Ungraded", "Ninth grade", "Tenth grade", "Eleventh grade", "Twelfth grade", "Postsecondary"],
        "CourseIdentificationSystem": ["LEA course code", "State course code"],
        "AttendanceEventCategory": ["Unexcused Absence", "Excused Absence", "Tardy", "In Attendance"],
    }.items()
    for code in codes
}  # fmt: skip


def problem(status: int, type_: str, title: str, detail: str,
            validation: dict[str, list[str]] | None = None, errors: list[str] | None = None) -> JSONResponse:  # fmt: skip
    return JSONResponse(
        {"detail": detail, "type": type_, "title": title, "status": status,
         "correlationId": uuid.uuid4().hex, "validationErrors": validation or {}, "errors": errors or []},
        status, media_type="application/problem+json",
    )  # fmt: skip


def _pick(record: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def _descriptors(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """Every (json path, value) of a field named ``...Descriptor``, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith("Descriptor") and isinstance(v, str):
                found.append((f"{path}.{k}", v))
            else:
                found.extend(_descriptors(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for item in value:
            found.extend(_descriptors(item, f"{path}[*]"))
    return found


def _orders() -> dict[str, int]:
    """Each resource's load order from the reference graph: one more than what it refers to."""
    refers = {
        r: {REFERENCES[p.split(".")[0]] for _, p in keys if p.split(".")[0] in REFERENCES}
        | {REFERENCES[f] for f in REQUIRED.get(r, ()) if f in REFERENCES}
        for r, keys in KEYS.items()
    }
    orders: dict[str, int] = {}

    def depth(r: str) -> int:
        if r not in orders:
            orders[r] = 1 + max((depth(t) for t in refers[r] if t != r), default=0)
        return orders[r]

    for r in KEYS:
        depth(r)
    return orders


class EdFiStandIn(ThreadedServer):
    name = "Ed-Fi ODS/API stand-in"

    def __init__(
        self, key: str = "edfi-key", secret: str = "edfi-secret", *, school_ids: tuple[int, ...] = (255901001,),
        expire_after: int = 0, throttle_first: int = 0, fail_first: int = 0, fail_from: int | None = None,
        refuse: Callable[[str, dict[str, Any]], str | None] | None = None, orders: dict[str, int] | None = None,
    ) -> None:  # fmt: skip
        self.key, self.secret = key, secret
        self.expire_after, self.throttle_first, self.fail_first = (
            expire_after,
            throttle_first,
            fail_first,
        )
        self.refuse, self.fail_from = refuse, fail_from
        self.records: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {r: {} for r in KEYS}
        for school_id in school_ids:
            self.records["schools"][(str(school_id),)] = {"schoolId": school_id}
        for year in range(1991, 2051):
            self.records["schoolYearTypes"][(str(year),)] = {"schoolYear": year}
        self.dependency_orders = {**_orders(), **(orders or {})}
        self.requests: list[tuple[str, str]] = []
        self.posted: list[str] = []  # the resource of each POST the server took, in order
        self.tokens: set[str] = set()
        self._calls = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.serve(Starlette(routes=[
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/metadata/data/v3/dependencies", self._dependencies, methods=["GET"]),
            Route("/data/v3/ed-fi/{resource:str}", self._upsert, methods=["POST", "GET"]),
        ]))  # fmt: skip

    # -- what every call goes through --------------------------------------------------------

    def _fault(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        if self.fail_from is not None and len(self.requests) > self.fail_from:
            response = problem(
                503, "urn:ed-fi:api:service-unavailable", "Service Unavailable", "Try again later."
            )
            response.headers["Retry-After"] = "0"
            return response
        if self.fail_first > 0:
            self.fail_first -= 1
            return problem(
                503, "urn:ed-fi:api:service-unavailable", "Service Unavailable", "Try again later."
            )
        if self.throttle_first > 0:
            self.throttle_first -= 1
            response = problem(
                429, "urn:ed-fi:api:too-many-requests", "Too Many Requests", "Slow down."
            )
            response.headers["Retry-After"] = "0"
            return response
        return None

    def _unauthorized(self, request: Request) -> Response | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            self._calls += 1
            if token in self.tokens and self.expire_after and self._calls > self.expire_after:
                self.expire_after = 0
                self.tokens.discard(token)
        if token not in self.tokens:
            return problem(401, "urn:ed-fi:api:security:authentication", "Authentication Failed",
                           "Authorization denied. The access token is invalid or has expired.")  # fmt: skip
        return None

    async def _token(self, request: Request) -> Response:
        if (fault := self._fault(request)) is not None:
            return fault
        form = await request.form()
        given = (form.get("client_id"), form.get("client_secret"))
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            given = tuple(base64.b64decode(header[6:]).decode().split(":", 1))  # type: ignore[assignment]
        if given != (self.key, self.secret):
            return JSONResponse(
                {
                    "error": "invalid_client",
                    "error_description": "Invalid client or Invalid client credentials",
                },
                401,
            )
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "expires_in": 1800, "token_type": "bearer"})

    async def _dependencies(self, request: Request) -> Response:
        if (fault := self._fault(request) or self._unauthorized(request)) is not None:
            return fault
        return JSONResponse([
            {"resource": f"/ed-fi/{r}", "order": o,
             "operations": ["Create"] if r in ("schools", "schoolYearTypes") else ["Create", "Update"]}
            for r, o in sorted(self.dependency_orders.items(), key=lambda i: (i[1], i[0]))
        ])  # fmt: skip

    # -- the upsert --------------------------------------------------------------------------

    def key_of(self, resource: str, record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(str(_pick(record, path)) for _, path in KEYS[resource])

    def _referred(self, name: str, ref: dict[str, Any]) -> tuple[str, tuple[Any, ...]] | None:
        target = REFERENCES[name]
        rename = REFERRED_AS.get(name, {})
        fields = {rename.get(k, k): v for k, v in ref.items()}
        names = [n for n, _ in KEYS[target]]
        if set(fields) != set(names):
            return None
        return target, tuple(str(fields[n]) for n in names)

    def _check(self, resource: str, record: dict[str, Any]) -> Response | None:
        missing = {
            f"$.{f}": [f"{f} is required."]
            for f in REQUIRED[resource]
            if record.get(f) in (None, "", [])
        }
        unknown = {p: [f"{p.rsplit('.', 1)[1][0].upper()}{p.rsplit('.', 1)[1][1:]} value '{v}' does not exist."]
                   for p, v in _descriptors(record) if v not in DESCRIPTORS}  # fmt: skip
        if missing or unknown:
            return problem(400, "urn:ed-fi:api:bad-request:data-validation-failed", "Data Validation Failed",
                           "Data validation failed. See 'validationErrors' for details.", {**missing, **unknown})  # fmt: skip
        unresolved = []
        for name, value in record.items():
            if name in REFERENCES and isinstance(value, dict):
                found = self._referred(name, value)
                if found is None:
                    return problem(400, "urn:ed-fi:api:bad-request:data-validation-failed", "Data Validation Failed",
                                   "Data validation failed. See 'validationErrors' for details.",
                                   {f"$.{name}": [f"{name} does not carry the referenced item's identifying values."]})  # fmt: skip
                target, key = found
                if key not in self.records[target]:
                    unresolved.append(target[:-1][0].upper() + target[1:-1])
        if unresolved:
            return problem(409, "urn:ed-fi:api:conflict:unresolved-reference", "Unresolved Reference",
                           f"The referenced {', '.join(sorted(set(unresolved)))} item(s) do not exist.")  # fmt: skip
        return None

    async def _upsert(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        if (fault := self._fault(request) or self._unauthorized(request)) is not None:
            return fault
        if resource not in REQUIRED:
            return problem(
                404,
                "urn:ed-fi:api:not-found",
                "Not Found",
                "The specified data could not be found.",
            )
        if request.method == "GET":
            return JSONResponse(list(self.records[resource].values()))
        try:
            record = await request.json()
        except ValueError:
            return problem(
                400,
                "urn:ed-fi:api:bad-request",
                "Bad Request",
                "The request could not be processed.",
            )
        if (refused := self._check(resource, record)) is not None:
            return refused
        if self.refuse is not None and (why := self.refuse(resource, record)):
            return problem(400, "urn:ed-fi:api:bad-request:data-validation-failed", "Data Validation Failed",
                           "Data validation failed. See 'validationErrors' for details.", {"$": [why]})  # fmt: skip
        key = self.key_of(resource, record)
        with self._lock:
            existing = self.records[resource].get(key)
            record["id"] = existing["id"] if existing else uuid.uuid4().hex
            self.records[resource][key] = record
            self.posted.append(resource)
        location = {"Location": f"{request.url}/{record['id']}"}
        return Response(status_code=200 if existing else 201, headers=location)
