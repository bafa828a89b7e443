"""OneRoster 1.2 records as the Rostering Service REST/JSON Binding 1.2 carries them, and a
client that writes them to a OneRoster REST service.

The records are the CSV export's (:mod:`.roster`), so the two paths send the same roster. Each
becomes the binding's JSON object of its class (``org``, ``academicSession``, ``course``,
``class``, ``user``, ``enrollment``): references as GUIDRefs (``{"href", "sourcedId",
"type"}``), lists as arrays, ``enabledUser`` a boolean, ``primary`` the binding's
``"true"``/``"false"``, a user's roles inside the user (the binding has no roles endpoint),
empty optional fields left out.

Writing. The binding's rostering endpoints are reads (``GET /ims/oneroster/rostering/v1p2/
orgs``, ``/orgs/{sourcedId}``, ...); it names no create or delete. The writes here follow the
pattern the OneRoster 1.2 Gradebook binding gives its own records and that push-capable
rostering receivers implement on the same paths: ``PUT <base>/ims/oneroster/rostering/v1p2/
<collection>/{sourcedId}`` with ``{"<class>": {...}}`` (201 made, 200 replaced) and ``DELETE``
of the same path (204; 404 when the service has no such record, taken as already gone).
Errors are the binding's ``imsx_StatusInfo`` (``imsx_codeMajor``, ``imsx_description``,
``imsx_CodeMinor``). The token comes from OAuth 2 client credentials (1EdTech Security
Framework 1.1): ``POST <token_url>`` with HTTP basic auth and
``grant_type=client_credentials&scope=...``; a refused bearer token is fetched again once
(:class:`..bearer.BearerApi`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from belltower.errors import ConfigurationError, JobFailed

from ..bearer import BearerApi
from .binding import FILES
from .delta import Records

PATH = "/ims/oneroster/rostering/v1p2"
ORDER = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments")
"""The resources in dependency order: each refers only to those before it (orgs to their
parent org, which is sent first). Deletions go the other way."""
CLASS = {
    "orgs": "org",
    "academicSessions": "academicSession",
    "courses": "course",
    "classes": "class",
    "users": "user",
    "enrollments": "enrollment",
}
KIND = CLASS  # the kind a record is kept under in sis.lms_sync_records
_HEAD = ("sourcedId", "status", "dateLastModified")
FIELDS: dict[str, tuple[str, ...]] = {
    "orgs": (*_HEAD, "name", "type", "identifier", "parent"),
    "academicSessions": (*_HEAD, "title", "type", "startDate", "endDate", "schoolYear", "parent"),
    "courses": (*_HEAD, "title", "courseCode", "org", "schoolYear"),
    "classes": (*_HEAD, "title", "classCode", "classType", "location", "course", "school", "terms"),
    "users": (
        *_HEAD, "enabledUser", "username", "givenName", "familyName", "middleName",
        "preferredFirstName", "identifier", "email", "sms", "phone", "agents", "primaryOrg",
        "roles",
    ),
    "enrollments": (
        *_HEAD, "role", "primary", "user", "class", "school", "beginDate", "endDate",
    ),
}  # fmt: skip
"""Every top-level field :class:`Shaper` can give an object of each collection (an empty
optional one is left out), with ``dateLastModified``: what a provider's ``fields`` may select."""
REFERENCES = frozenset(
    {"parent", "org", "schoolYear", "course", "school", "terms", "agents", "primaryOrg", "roles",
     "user", "class"}
)  # fmt: skip
"""The fields holding GUIDRefs or lists, not one value: a provider's filter and sort refuse them."""
SCOPES = (
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.createput "
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.delete"
)

Payload = dict[str, Any]


def _fields(file: str, values: tuple[str, ...]) -> dict[str, str]:
    names = [c.name for c in FILES[file]][3:]
    return {n: v for n, v in zip(names, values, strict=True) if v != ""}


class Shaper:
    """CSV-binding records to the REST binding's objects; ``href`` under ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + PATH

    def ref(self, collection: str, sourced_id: str) -> dict[str, str]:
        return {
            "href": f"{self.base}/{collection}/{quote(sourced_id, safe='')}",
            "sourcedId": sourced_id,
            "type": CLASS[collection],
        }

    def refs(self, collection: str, ids: str) -> list[dict[str, str]]:
        return [self.ref(collection, i) for i in ids.split(",") if i]

    def records(self, records: Records) -> dict[str, dict[str, Payload]]:
        """collection -> sourcedId -> the object sent (without ``dateLastModified``)."""
        roles: dict[str, list[dict[str, str]]] = {}
        for values in records.get("roles", {}).values():
            role = _fields("roles", values)
            roles.setdefault(role["userSourcedId"], []).append(role)
        out: dict[str, dict[str, Payload]] = {}
        for collection in ORDER:
            out[collection] = {
                sid: {"sourcedId": sid, "status": "active", **self._one(collection, sid, v, roles)}
                for sid, v in sorted(records.get(collection, {}).items())
            }
        return out

    def _one(self, collection: str, sid: str, values: tuple[str, ...],
             roles: dict[str, list[dict[str, str]]]) -> Payload:  # fmt: skip
        f = _fields(collection, values)
        shape = getattr(self, f"_{CLASS[collection]}")
        body: Payload = shape(f, roles.get(sid, []))
        return {k: v for k, v in body.items() if v not in (None, "", [])}

    def _org(self, f: dict[str, str], _: Any) -> Payload:
        parent = f.get("parentSourcedId")
        return {"name": f["name"], "type": f["type"], "identifier": f.get("identifier"),
                "parent": self.ref("orgs", parent) if parent else None}  # fmt: skip

    def _academicSession(self, f: dict[str, str], _: Any) -> Payload:
        parent = f.get("parentSourcedId")
        return {"title": f["title"], "type": f["type"], "startDate": f["startDate"],
                "endDate": f["endDate"], "schoolYear": f["schoolYear"],
                "parent": self.ref("academicSessions", parent) if parent else None}  # fmt: skip

    def _course(self, f: dict[str, str], _: Any) -> Payload:
        year = f.get("schoolYearSourcedId")
        return {"title": f["title"], "courseCode": f.get("courseCode"),
                "org": self.ref("orgs", f["orgSourcedId"]),
                "schoolYear": self.ref("academicSessions", year) if year else None}  # fmt: skip

    def _class(self, f: dict[str, str], _: Any) -> Payload:
        return {"title": f["title"], "classCode": f.get("classCode"),
                "classType": f["classType"], "location": f.get("location"),
                "course": self.ref("courses", f["courseSourcedId"]),
                "school": self.ref("orgs", f["schoolSourcedId"]),
                "terms": self.refs("academicSessions", f["termSourcedIds"])}  # fmt: skip

    def _user(self, f: dict[str, str], roles: list[dict[str, str]]) -> Payload:
        org = f.get("primaryOrgSourcedId")
        return {
            "enabledUser": f["enabledUser"] == "true", "username": f["username"],
            "givenName": f["givenName"], "familyName": f["familyName"],
            "middleName": f.get("middleName"), "preferredFirstName": f.get("preferredGivenName"),
            "identifier": f.get("identifier"), "email": f.get("email"), "sms": f.get("sms"),
            "phone": f.get("phone"), "agents": self.refs("users", f.get("agentSourcedIds", "")),
            "primaryOrg": self.ref("orgs", org) if org else None,
            "roles": [
                {"roleType": r["roleType"], "role": r["role"],
                 "org": self.ref("orgs", r["orgSourcedId"])}
                for r in roles
            ],
        }  # fmt: skip

    def _enrollment(self, f: dict[str, str], _: Any) -> Payload:
        return {"role": f["role"], "primary": f.get("primary", "false"),
                "user": self.ref("users", f["userSourcedId"]),
                "class": self.ref("classes", f["classSourcedId"]),
                "school": self.ref("orgs", f["schoolSourcedId"]),
                "beginDate": f.get("beginDate"), "endDate": f.get("endDate")}  # fmt: skip


class OneRosterError(JobFailed):
    """The service refused one record (a 4xx other than 401/429): status and its description."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"the OneRoster service refused {method} {path} with {status}: {message}")
        self.status = status
        self.reason = message


def describe(response: httpx.Response) -> str:
    """An ``imsx_StatusInfo`` (or OAuth error) as one short line."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return response.reason_phrase
    minor = body.get("imsx_CodeMinor") or {}
    fields = minor.get("imsx_codeMinorField") if isinstance(minor, dict) else None
    code = ""
    if isinstance(fields, list) and fields and isinstance(fields[0], dict):
        code = str(fields[0].get("imsx_codeMinorFieldValue") or "")
    text = body.get("imsx_description") or body.get("error_description") or body.get("error")
    return (f"{code}: {text}" if code and text else str(text or code or response.reason_phrase))[
        :300
    ]


class OneRosterClient(BearerApi):
    vendor = "The OneRoster service"

    def __init__(self, base_url: str, token_url: str, client_id: str, client_secret: str, *,
                 scope: str = SCOPES, secret_names: str = "the OneRoster client id and secret",
                 **options: Any) -> None:  # fmt: skip
        super().__init__(base_url, headers={"Accept": "application/json"}, **options)
        self._token_url = token_url
        self._auth = (client_id, client_secret)
        self._scope = scope
        self._names = secret_names

    def describe(self, response: httpx.Response) -> str:
        return describe(response)

    async def fetch_token(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        response = await self.send(
            "POST", self._token_url, "the token request", data=form, auth=self._auth
        )
        if response.status_code in (400, 401):
            raise ConfigurationError(
                f"the OneRoster token endpoint refused the client ({describe(response)}); check "
                f"{self._names}, the job's token_url and scope"
            )
        if response.status_code >= 300:
            raise JobFailed(
                f"the OneRoster token endpoint answered {response.status_code} to the token request"
            )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def token_refused(self, method: str, path: str, response: httpx.Response) -> str:
        return (
            f"the OneRoster service refused the access token for {method} {path}; check "
            f"{self._names} and the scope granted to the client"
        )

    @staticmethod
    def path(collection: str, sourced_id: str) -> str:
        return f"{PATH}/{collection}/{quote(sourced_id, safe='')}"

    async def put(self, collection: str, sourced_id: str, record: Payload) -> bool:
        """Write one record; True when the service made it (201), False when it replaced one."""
        path = self.path(collection, sourced_id)
        response = await self.authorized("PUT", path, json={CLASS[collection]: record})
        if response.status_code in (200, 201, 204):
            return response.status_code == 201
        raise OneRosterError("PUT", path, response.status_code, describe(response))

    async def delete(self, collection: str, sourced_id: str) -> bool:
        """Delete one record; False when the service had none (404)."""
        path = self.path(collection, sourced_id)
        response = await self.authorized("DELETE", path)
        if response.status_code in (200, 204):
            return True
        if response.status_code == 404:
            return False
        raise OneRosterError("DELETE", path, response.status_code, describe(response))
