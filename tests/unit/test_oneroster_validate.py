"""The OneRoster validator passes a set that keeps the CSV Binding 1.2.1 and names the file,
line and column of each rule a set breaks; each rule is broken once here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from belltower_integration.oneroster import package
from belltower_integration.oneroster.binding import header
from belltower_integration.oneroster.validate import InvalidExport, check, problems_in

Data = dict[str, list[dict[str, str]]]

GOOD: Data = {
    "orgs": [
        {"sourcedId": "root", "name": "College", "type": "district"},
        {"sourcedId": "campus-MAIN", "name": "Main", "type": "school", "parentSourcedId": "root"},
    ],
    "academicSessions": [
        {"sourcedId": "term-CURR", "title": "Current", "type": "term", "startDate": "2026-01-12",
         "endDate": "2026-05-08", "schoolYear": "2026"},
    ],
    "courses": [{"sourcedId": "course-BIO101", "title": "Biology", "orgSourcedId": "root"}],
    "classes": [
        {"sourcedId": "class-1", "title": "BIO101 01", "courseSourcedId": "course-BIO101",
         "classType": "scheduled", "schoolSourcedId": "campus-MAIN", "termSourcedIds": "term-CURR"},
    ],
    "users": [
        {"sourcedId": "S1", "enabledUser": "true", "username": "s1", "givenName": "Ada",
         "familyName": "Lovelace", "primaryOrgSourcedId": "campus-MAIN"},
        {"sourcedId": "F1", "enabledUser": "true", "username": "f1", "givenName": "Alan",
         "familyName": "Turing"},
    ],
    "roles": [
        {"sourcedId": "S1-student", "userSourcedId": "S1", "roleType": "primary",
         "role": "student", "orgSourcedId": "campus-MAIN"},
        {"sourcedId": "F1-teacher", "userSourcedId": "F1", "roleType": "primary",
         "role": "teacher", "orgSourcedId": "campus-MAIN", "beginDate": "2026-01-01"},
    ],
    "enrollments": [
        {"sourcedId": "e1", "classSourcedId": "class-1", "schoolSourcedId": "campus-MAIN",
         "userSourcedId": "S1", "role": "student", "primary": "false"},
        {"sourcedId": "e2", "classSourcedId": "class-1", "schoolSourcedId": "campus-MAIN",
         "userSourcedId": "F1", "role": "teacher", "primary": "true", "endDate": "2026-05-08"},
    ],
    "demographics": [{"sourcedId": "S1", "birthDate": "2004-02-29", "sex": "female", "white": "false"}],
}  # fmt: skip

STAMP = "2026-03-02T06:00:00.000Z"


def encode(data: Data, mode: str = "bulk") -> dict[str, bytes]:
    rows = {}
    for name, records in data.items():
        if mode == "delta":
            records = [{"status": "active", "dateLastModified": STAMP, **r} for r in records]
        rows[name] = [[r.get(c, "") for c in header(name)] for r in records]
    return package.files(rows, mode, "Belltower", "belltower")


def where(problems: list[Any]) -> list[tuple[str, int, str]]:
    return [(p.file, p.line, p.column) for p in problems]


def test_a_set_that_keeps_the_binding_passes_in_bulk_and_in_delta() -> None:
    assert problems_in(encode(GOOD)) == []
    assert problems_in(encode(GOOD, "delta")) == []
    check(encode(GOOD))


def set_(file: str, index: int, column: str, value: str) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        data[file][index][column] = value

    return change


def repeat(file: str, index: int) -> Callable[[Data], None]:
    def change(data: Data) -> None:
        data[file].append(dict(data[file][index]))

    return change


# (what is broken, file, line, column, words in the message)
CASES = [
    (set_("users", 0, "givenName", ""), "users.csv", 2, "givenName", "required and empty"),
    (set_("classes", 0, "schoolSourcedId", ""), "classes.csv", 2, "schoolSourcedId", "required"),
    (set_("academicSessions", 0, "startDate", "2026-1-12"), "academicSessions.csv", 2, "startDate", "YYYY-MM-DD"),
    (set_("academicSessions", 0, "endDate", "2026-02-30"), "academicSessions.csv", 2, "endDate", "YYYY-MM-DD"),
    (set_("academicSessions", 0, "schoolYear", "26"), "academicSessions.csv", 2, "schoolYear", "YYYY"),
    (set_("users", 1, "enabledUser", "True"), "users.csv", 3, "enabledUser", "true or false"),
    (set_("enrollments", 1, "primary", "yes"), "enrollments.csv", 3, "primary", "true or false"),
    (set_("orgs", 1, "type", "campus"), "orgs.csv", 3, "type", "not one of"),
    (set_("academicSessions", 0, "type", "quarter"), "academicSessions.csv", 2, "type", "not one of"),
    (set_("classes", 0, "classType", "lecture"), "classes.csv", 2, "classType", "not one of"),
    (set_("roles", 0, "role", "learner"), "roles.csv", 2, "role", "not one of"),
    (set_("roles", 0, "roleType", "main"), "roles.csv", 2, "roleType", "not one of"),
    (set_("enrollments", 0, "role", "guardian"), "enrollments.csv", 2, "role", "not one of"),
    (set_("demographics", 0, "sex", "f"), "demographics.csv", 2, "sex", "not one of"),
    (repeat("enrollments", 0), "enrollments.csv", 4, "sourcedId", "'e1' repeats line 2"),
    (set_("enrollments", 1, "sourcedId", "e 2"), "enrollments.csv", 3, "sourcedId", "not a sourcedId"),
    (set_("enrollments", 0, "userSourcedId", "S9"), "enrollments.csv", 2, "userSourcedId", "not in users.csv"),
    (set_("enrollments", 0, "classSourcedId", "class-9"), "enrollments.csv", 2, "classSourcedId", "not in classes.csv"),
    (set_("classes", 0, "courseSourcedId", "course-X"), "classes.csv", 2, "courseSourcedId", "not in courses.csv"),
    (set_("classes", 0, "termSourcedIds", "term-CURR,term-X"), "classes.csv", 2, "termSourcedIds", "'term-X' is not in academicSessions.csv"),
    (set_("courses", 0, "orgSourcedId", "nowhere"), "courses.csv", 2, "orgSourcedId", "not in orgs.csv"),
    (set_("roles", 1, "beginDate", "01/01/2026"), "roles.csv", 3, "beginDate", "YYYY-MM-DD"),
    (set_("users", 0, "email", "a\r\nb"), "users.csv", 2, "email", "line break"),
    (set_("orgs", 0, "status", "active"), "orgs.csv", 2, "status", "blank in a bulk file"),
    (set_("orgs", 0, "dateLastModified", STAMP), "orgs.csv", 2, "dateLastModified", "blank in a bulk"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "file", "line", "column", "words"), CASES)
def test_each_broken_rule_is_named_by_file_line_and_column(
    change: Callable[[Data], None], file: str, line: int, column: str, words: str
) -> None:
    data = copy.deepcopy(GOOD)
    change(data)
    problems = problems_in(encode(data))
    assert where(problems) == [(file, line, column)], problems
    assert words in problems[0].message
    with pytest.raises(InvalidExport) as err:
        check(encode(data))
    assert f"{file}, line {line}, column {column}:" in str(err.value)


@pytest.mark.parametrize(
    ("change", "column", "words"),
    [
        (set_("users", 0, "status", "inactive"), "status", "not one of active, tobedeleted"),
        (set_("users", 0, "status", ""), "status", "required in a delta file"),
        (set_("users", 0, "dateLastModified", "2026-03-02 06:00:00"), "dateLastModified", "UTC date-time"),
        (set_("users", 0, "dateLastModified", "2026-03-02T06:00:00+01:00"), "dateLastModified", "UTC"),
    ],
)  # fmt: skip
def test_a_delta_file_needs_a_status_and_a_utc_date_last_modified(
    change: Callable[[Data], None], column: str, words: str
) -> None:
    data = copy.deepcopy(GOOD)
    for row in data["users"]:
        row.update(status="active", dateLastModified=STAMP)
    change(data)
    files = encode({k: v for k, v in data.items() if k == "users"}, "delta")
    # Only the users were sent: the org they point at is one the receiver has.
    problems = problems_in(files, {"orgs": {"campus-MAIN"}})
    assert where(problems) == [("users.csv", 2, column)], problems
    assert words in problems[0].message


def test_a_delta_may_refer_to_records_the_receiver_already_has_and_to_no_others() -> None:
    only = {"enrollments": copy.deepcopy(GOOD["enrollments"])}
    files = encode(only, "delta")
    known = {"classes": {"class-1"}, "users": {"S1", "F1"}, "orgs": {"campus-MAIN"}}
    assert problems_in(files, known) == []
    missing = problems_in(files, {**known, "users": {"S1"}})
    assert where(missing) == [("enrollments.csv", 3, "userSourcedId")]


def test_the_header_must_be_the_bindings_in_order() -> None:
    files = encode(GOOD)
    text = files["users.csv"].decode()
    swapped = text.replace("givenName,familyName", "familyName,givenName", 1)
    problems = problems_in({**files, "users.csv": swapped.encode()})
    assert where(problems) == [("users.csv", 1, "givenName")]
    assert "column 7 must be 'givenName', found 'familyName'" in problems[0].message
    lines = text.split("\r\n")
    extended = "\r\n".join([lines[0] + ",metadata.house", *(f"{x}," for x in lines[1:-1]), ""])
    assert problems_in({**files, "users.csv": extended.encode()}) == []
    unnamed = extended.replace("metadata.house", "house", 1)
    problems = problems_in({**files, "users.csv": unnamed.encode()})
    assert where(problems) == [("users.csv", 1, "house")]
    assert "metadata.*" in problems[0].message


def test_rows_must_have_the_headers_width_and_files_must_have_rows() -> None:
    files = encode(GOOD)
    short = files["courses.csv"].decode().rstrip("\r\n").rsplit(",", 1)[0] + "\r\n"
    problems = problems_in({**files, "courses.csv": short.encode()})
    assert where(problems) == [("courses.csv", 2, "")]
    assert "fields" in problems[0].message
    header_only = files["courses.csv"].decode().split("\r\n")[0] + "\r\n"
    problems = problems_in({**files, "courses.csv": header_only.encode()})
    assert ("courses.csv", 2, "") in where(problems)
    assert any("no data rows" in p.message for p in problems)
    problems = problems_in({**files, "courses.csv": "sourcedId,ü".encode("latin-1")})
    assert where(problems)[0] == ("courses.csv", 0, "")
    assert "not UTF-8" in problems[0].message


def test_the_manifest_declares_exactly_the_files_sent_and_the_versions() -> None:
    files = encode(GOOD)
    manifest = files["manifest.csv"].decode()
    undeclared = manifest.replace("file.roles,bulk", "file.roles,absent")
    problems = problems_in({**files, "manifest.csv": undeclared.encode()})
    assert [p.message for p in problems] == ["roles.csv is sent but declared absent"]
    assert problems[0].file == "manifest.csv" and problems[0].column == "value"
    without = {k: v for k, v in files.items() if k != "roles.csv"}
    assert [p.message for p in problems_in(without)] == ["roles.csv is declared but not sent"]
    old = manifest.replace("oneroster.version,1.2", "oneroster.version,1.1")
    assert [p.message for p in problems_in({**files, "manifest.csv": old.encode()})] == [
        "oneroster.version must be 1.2"
    ]
    odd = manifest.replace("file.lineItems,absent", "file.lineItems,full")
    assert "file.lineItems must be one of absent, bulk, delta" in [
        p.message for p in problems_in({**files, "manifest.csv": odd.encode()})
    ]
    assert [
        p.message for p in problems_in({k: v for k, v in files.items() if k != "manifest.csv"})
    ] == ["is missing"]
    stray = {**files, "lineItems.csv": b"sourcedId\r\nx\r\n"}
    assert "is not a file this export may send" in [p.message for p in problems_in(stray)]
