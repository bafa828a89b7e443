"""A stand-in for a Moodle site's web services over REST, built to Moodle's documented contract.

``POST /webservice/rest/server.php`` with ``wstoken``, ``wsfunction`` and
``moodlewsrestformat=json`` (query string or form body, as Moodle reads both), arguments
form-encoded the PHP way (``users[0][username]``). Like Moodle it answers refusals with HTTP 200
and ``{"exception", "errorcode", "message"}``: a wrong token (``invalidtoken``), a function the
service lacks (``accessexception``), a missing required field or a username, course short name
or id number taken already (``invalidparameter``; the whole call is rolled back, as Moodle runs
each call in one transaction). Without ``moodlewsrestformat=json`` it answers XML, as Moodle
does. Moodle core has no rate limit on web services, so neither has this.

With ``attendance_plugin`` (the default) it also has the Attendance activity plugin
(``mod_attendance``) and its web-service function ``mod_attendance_get_sessions``, and core's
``core_course_get_contents`` lists each course's activities (an attendance activity is a module
with ``modname`` ``attendance`` and its ``instance`` id). Without the plugin, its functions are
unknown to the site (``invalidrecord``, as Moodle answers a function it does not have). Tests add
activities and sessions with ``add_attendance`` and ``add_session``; statuses are the plugin's
default set (P Present, A Absent, L Late, E Excused). ``fail_first``
answers that many requests with 503 first; ``stall_first`` keeps that many requests waiting
``stall_s`` before answering (a client timeout).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import defaultdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

_KEY = re.compile(r"^([^\[]+)((?:\[[^\]]*\])*)$")
FUNCTIONS = (
    "core_user_create_users", "core_user_update_users", "core_user_get_users_by_field",
    "core_course_create_courses", "core_course_update_courses", "core_course_get_courses_by_field",
    "enrol_manual_enrol_users", "enrol_manual_unenrol_users", "core_course_get_contents",
)  # fmt: skip
ATTENDANCE_FUNCTIONS = ("mod_attendance_get_sessions",)
STATUSES = (("P", "Present", 2.0), ("A", "Absent", 0.0), ("L", "Late", 1.0), ("E", "Excused", 1.0))


class Refused(Exception):
    def __init__(self, exception: str, errorcode: str, message: str, debuginfo: str = "") -> None:
        super().__init__(message)
        self.body = {"exception": exception, "errorcode": errorcode, "message": message}
        if debuginfo:
            self.body["debuginfo"] = debuginfo


def invalid(detail: str) -> Refused:
    return Refused(
        "invalid_parameter_exception",
        "invalidparameter",
        f"Invalid parameter value detected ({detail})",
    )


def parse(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``users[0][username]=ada`` into {"users": [{"username": "ada"}]}, as PHP reads it."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if not m:
            continue
        path = [m.group(1), *re.findall(r"\[([^\]]*)\]", m.group(2))]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return {k: _lists(v) for k, v in root.items()}


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def _require(record: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if not str(record.get(key, "")).strip():
            raise Refused(
                "invalid_parameter_exception", "invalidparameter", "Invalid parameter value detected",
                f"{where} => Invalid parameter value detected: Missing required key in single structure: {key}",
            )  # fmt: skip


class MoodleStandIn(ThreadedServer):
    name = "Moodle stand-in"

    def __init__(
        self,
        token: str = "moodle-test-token",
        *,
        functions: tuple[str, ...] = FUNCTIONS + ATTENDANCE_FUNCTIONS,
        attendance_plugin: bool = True,
        fail_first: int = 0,
        stall_first: int = 0,
        stall_s: float = 2.0,
    ) -> None:
        self.token = token
        self.functions = functions
        self.attendance_plugin = attendance_plugin
        self.modules: dict[int, list[dict[str, Any]]] = defaultdict(list)  # course id -> modules
        self.sessions: dict[int, list[dict[str, Any]]] = {}  # attendance id -> sessions
        self.fail_first = fail_first
        self.stall_first = stall_first
        self.stall_s = stall_s
        self.users: dict[int, dict[str, Any]] = {}
        self.courses: dict[int, dict[str, Any]] = {}
        self.enrolments: set[tuple[int, int, int]] = set()  # (courseid, userid, roleid)
        self.calls: list[str] = []
        self.counts: dict[str, int] = defaultdict(int)
        self._next_id = 100
        self._lock = threading.Lock()
        self.serve(
            Starlette(
                routes=[Route("/webservice/rest/server.php", self._rest, methods=["GET", "POST"])]
            )
        )

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _rest(self, request: Request) -> Response:
        if self.stall_first > 0:
            self.stall_first -= 1
            await asyncio.sleep(self.stall_s)
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response("Service Unavailable", 503)
        pairs = list(request.query_params.multi_items())
        if request.method == "POST":
            pairs += [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        flat = dict(pairs)
        function = flat.get("wsfunction", "")
        self.calls.append(function)
        json_out = flat.get("moodlewsrestformat") == "json"
        try:
            if flat.get("wstoken") != self.token:
                raise Refused("moodle_exception", "invalidtoken", "Invalid token - token not found")
            installed = FUNCTIONS + (ATTENDANCE_FUNCTIONS if self.attendance_plugin else ())
            if function not in installed:
                raise Refused("dml_missing_record_exception", "invalidrecord",
                              "Can't find data record in database table external_functions.")  # fmt: skip
            if function not in self.functions:
                raise Refused(
                    "webservice_access_exception", "accessexception", "Access control exception"
                )
            args = parse(
                [
                    (k, v)
                    for k, v in pairs
                    if k not in ("wstoken", "wsfunction", "moodlewsrestformat")
                ]
            )
            with self._lock:
                result = getattr(self, "_" + function)(args)
            self.counts[function] += 1
        except Refused as exc:
            if not json_out:
                return Response(
                    f"<EXCEPTION><MESSAGE>{exc}</MESSAGE></EXCEPTION>",
                    200,
                    media_type="application/xml",
                )
            return JSONResponse(exc.body)
        if not json_out:
            return Response("<RESPONSE></RESPONSE>", 200, media_type="application/xml")
        return JSONResponse(result)

    # -- users -------------------------------------------------------------------------------

    def _user_view(self, user: dict[str, Any]) -> dict[str, Any]:
        view = {
            k: user.get(k, "")
            for k in ("id", "username", "firstname", "lastname", "email", "idnumber", "auth")
        }
        view["fullname"] = f"{user['firstname']} {user['lastname']}"
        view["suspended"] = bool(int(user.get("suspended", 0) or 0))
        return view

    def _core_user_create_users(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        made, taken = [], {u["username"] for u in self.users.values()}
        for i, user in enumerate(args.get("users") or []):
            _require(user, ("username", "firstname", "lastname", "email"), f"users => {i}")
            if user["username"] != user["username"].lower():
                raise invalid("The username must be in lower case")
            if user["username"] in taken:
                raise invalid(f"Username already exists: {user['username']}")
            if not user.get("password") and not int(user.get("createpassword") or 0):
                raise invalid(
                    "Invalid password: you must provide a password, or set createpassword."
                )
            taken.add(user["username"])
            made.append({**user, "id": self._id()})
        for user in made:  # all or nothing, as Moodle's transaction
            self.users[user["id"]] = user
        return [{"id": u["id"], "username": u["username"]} for u in made]

    def _core_user_update_users(self, args: dict[str, Any]) -> dict[str, Any]:
        changes = args.get("users") or []
        for i, change in enumerate(changes):
            _require(change, ("id",), f"users => {i}")
            user = self.users.get(int(change["id"]))
            if user is None:
                raise invalid(f"Invalid user id: {change['id']}")
            name = change.get("username")
            if name and any(
                u["username"] == name and u["id"] != user["id"] for u in self.users.values()
            ):
                raise invalid(f"Username already exists: {name}")
        for change in changes:
            self.users[int(change["id"])].update({k: v for k, v in change.items() if k != "id"})
        return {"warnings": []}

    def _core_user_get_users_by_field(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        field = args.get("field")
        if field not in ("id", "idnumber", "username", "email"):
            raise invalid(f"invalid field {field!r}")
        values = {str(v) for v in args.get("values") or []}
        return [self._user_view(u) for u in self.users.values() if str(u.get(field, "")) in values]

    # -- courses -----------------------------------------------------------------------------

    def _core_course_create_courses(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        made: list[dict[str, Any]] = []
        for i, course in enumerate(args.get("courses") or []):
            _require(course, ("fullname", "shortname", "categoryid"), f"courses => {i}")
            for key, what in (("shortname", "Short name"), ("idnumber", "ID number")):
                value = course.get(key)
                if value and any(c.get(key) == value for c in [*self.courses.values(), *made]):
                    raise Refused("moodle_exception", f"{key}taken",
                                  f"{what} is already used for another course ({value})")  # fmt: skip
            made.append({**course, "id": self._id()})
        for course in made:
            self.courses[course["id"]] = course
        return [{"id": c["id"], "shortname": c["shortname"]} for c in made]

    def _core_course_update_courses(self, args: dict[str, Any]) -> dict[str, Any]:
        warnings = []
        for change in args.get("courses") or []:
            course = self.courses.get(int(change.get("id") or 0))
            if course is None:
                warnings.append(
                    {
                        "item": "course",
                        "itemid": change.get("id"),
                        "warningcode": "errorcourseupdate",
                        "message": "Course not found",
                    }
                )
                continue
            course.update({k: v for k, v in change.items() if k != "id"})
        return {"warnings": warnings}

    def _core_course_get_courses_by_field(self, args: dict[str, Any]) -> dict[str, Any]:
        field, value = args.get("field", ""), str(args.get("value", ""))
        found = [c for c in self.courses.values() if not field or str(c.get(field, "")) == value]
        return {"courses": found, "warnings": []}

    # -- manual enrolments -------------------------------------------------------------------

    def _check_enrolment(
        self, e: dict[str, Any], required: tuple[str, ...], i: int
    ) -> tuple[int, int, int]:
        _require(e, required, f"enrolments => {i}")
        user, course = int(e["userid"]), int(e["courseid"])
        if user not in self.users:
            raise Refused(
                "dml_missing_record_exception",
                "invalidrecord",
                "Can't find data record in database table user.",
            )
        if course not in self.courses:
            raise Refused(
                "dml_missing_record_exception",
                "invalidrecord",
                "Can't find data record in database table course.",
            )
        return course, user, int(e.get("roleid") or 0)

    def _enrol_manual_enrol_users(self, args: dict[str, Any]) -> None:
        rows = [
            self._check_enrolment(e, ("roleid", "userid", "courseid"), i)
            for i, e in enumerate(args.get("enrolments") or [])
        ]
        self.enrolments.update(rows)
        return None

    def _enrol_manual_unenrol_users(self, args: dict[str, Any]) -> None:
        for i, e in enumerate(args.get("enrolments") or []):
            course, user, role = self._check_enrolment(e, ("userid", "courseid"), i)
            self.enrolments -= {
                x for x in self.enrolments if x[:2] == (course, user) and (not role or x[2] == role)
            }
        return None

    # -- course contents and the attendance plugin ------------------------------------------

    def _core_course_get_contents(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        _require(args, ("courseid",), "courseid")
        if int(args["courseid"]) not in self.courses:
            raise Refused("dml_missing_record_exception", "invalidrecord",
                          "Can't find data record in database table course.")  # fmt: skip
        modules = self.modules.get(int(args["courseid"]), [])
        return [{"id": 1, "name": "General", "section": 0, "visible": 1, "modules": modules}]

    def _mod_attendance_get_sessions(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        _require(args, ("attendanceid",), "attendanceid")
        attendance = int(args["attendanceid"])
        if attendance not in self.sessions:
            raise Refused("dml_missing_record_exception", "invalidrecord",
                          "Can't find data record in database table course_modules.")  # fmt: skip
        return self.sessions[attendance]

    def add_attendance(self, course_id: int, name: str = "Attendance") -> int:
        """An attendance activity in a course; returns its instance id."""
        instance = self._id()
        self.modules[course_id].append(
            {"id": self._id(), "name": name, "modname": "attendance", "instance": instance,
             "visible": 1}
        )  # fmt: skip
        self.sessions[instance] = []
        return instance

    def add_session(self, attendance: int, sessdate: int, marks: dict[int, str]) -> int:
        """A session at ``sessdate`` (epoch) with each student's status acronym."""
        statuses = [
            {"id": attendance * 10 + n, "attendanceid": attendance, "acronym": acronym,
             "description": text, "grade": grade, "visible": 1, "deleted": 0, "setnumber": 0}
            for n, (acronym, text, grade) in enumerate(STATUSES)
        ]  # fmt: skip
        by_acronym = {st["acronym"]: st["id"] for st in statuses}
        session = {
            "id": self._id(), "attendanceid": attendance, "groupid": 0, "sessdate": sessdate,
            "duration": 3600, "lasttaken": sessdate, "lasttakenby": 0, "timemodified": sessdate,
            "description": "Regular class session", "descriptionformat": 1, "statusset": 0,
            "courseid": next(c for c, mods in self.modules.items()
                             if any(m["instance"] == attendance for m in mods)),
            "statuses": statuses,
            "attendance_log": [
                {"id": str(self._id()), "studentid": user, "statusid": str(by_acronym[acronym]),
                 "remarks": ""}
                for user, acronym in marks.items()
            ],
            "users": [
                {"id": u, "firstname": self.users[u]["firstname"],
                 "lastname": self.users[u]["lastname"]}
                for u in marks
            ],
        }  # fmt: skip
        self.sessions[attendance].append(session)
        return int(session["id"])

    # -- what a test looks at ----------------------------------------------------------------

    def user_by_idnumber(self, idnumber: str) -> dict[str, Any] | None:
        return next((u for u in self.users.values() if u.get("idnumber") == idnumber), None)

    def course_by_idnumber(self, idnumber: str) -> dict[str, Any] | None:
        return next((c for c in self.courses.values() if c.get("idnumber") == idnumber), None)
