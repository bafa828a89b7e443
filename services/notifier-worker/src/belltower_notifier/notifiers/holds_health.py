"""Holds and health notifiers: user-defined holds, immunization expiration."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from belltower.errors import InvalidInput

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .common import (
    NAME,
    STUDENT_COLUMNS,
    Channel,
    Meta,
    rows_of,
)


class UserDefinedHoldParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADVISING"
    hold_types: Annotated[
        list[str], Meta(description="user-defined hold type codes; empty: every user-defined type")
    ] = []
    look_back_days: Annotated[
        int, Meta(ge=0, le=365, description="also holds that began this many days before today")
    ] = 0
    notify_students: Annotated[bool, Meta(description="tell the students about their holds")] = True
    student_channel: Channel = "email"


async def _user_defined_hold(q: Query[UserDefinedHoldParams]) -> list[Row]:
    types = [t.upper() for t in q.params.hold_types]
    if types:
        known = {
            r["code"]
            for r in await q.conn.fetch("SELECT code FROM sis.hold_types WHERE user_defined")
        }
        if unknown := sorted(set(types) - known):
            raise InvalidInput(
                "param.hold_types", f"not user-defined hold types: {', '.join(unknown)}",
                ", ".join(sorted(known)) or "(none defined)",
            )  # fmt: skip
    args: list[Any] = [q.today - timedelta(days=q.params.look_back_days), q.today, types]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, h.id AS hold_id, ht.name AS hold, h.reason, h.starts_on, h.ends_on
          FROM sis.holds h
          JOIN sis.hold_types ht ON ht.code = h.hold_type
          JOIN sis.people p ON p.id = h.person_id
         WHERE ht.user_defined AND h.released_at IS NULL
           AND h.starts_on >= $1 AND h.starts_on <= $2 AND (h.ends_on IS NULL OR h.ends_on >= $2)
           AND (cardinality($3::text[]) = 0 OR h.hold_type = ANY($3::text[]))
           AND {q.where(args)}
         ORDER BY name"""
    return await rows_of(q, sql, args, lambda v: f"hold:{v['hold_id']}")


user_defined_hold = Notifier(
    name="notifier.user_defined_hold",
    title="Notifier: User Defined Hold",
    description=(
        "The User Defined Hold notification alerts the members of the selected group when the holds "
        "begin for students who have holds on their accounts. It will also notify the students with "
        "holds on their accounts. The notifier can be limited by Division, Campus, Department, and/or Level."
    ),
    params=UserDefinedHoldParams,
    select=_user_defined_hold,
    columns=(
        *STUDENT_COLUMNS,
        ("hold", "Hold"),
        ("reason", "Reason"),
        ("starts_on", "From"),
        ("ends_on", "Until"),
    ),
    subject="{{ count | counted('hold') }} began",
    intro="These user-defined holds began:",
    student_subject="A hold has been placed on your account",
    student_intro="A hold has been placed on your account; contact the office named to have it lifted:",
    repeat="once_per_item",
)


class ImmunizationParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = ""
    threshold_days: Annotated[
        int, Meta(ge=0, le=3650, description="report immunizations expiring within this many days")
    ] = 30
    notify_students: Annotated[bool, Meta(description="tell the students (the point of it)")] = True
    student_channel: Channel = "email"


async def _immunization(q: Query[ImmunizationParams]) -> list[Row]:
    args: list[Any] = [q.today, q.today + timedelta(days=q.params.threshold_days)]
    sql = f"""
        SELECT p.id AS person_id, {NAME}, i.id AS immunization_id, i.kind AS immunization, i.expires_on
          FROM sis.immunizations i JOIN sis.people p ON p.id = i.person_id
         WHERE i.expires_on >= $1 AND i.expires_on <= $2 AND {q.where(args)}
         ORDER BY i.expires_on, name"""
    # The expiry date is part of the item: a record renewed (a new date) that nears its new
    # expiry is told again, once; the same date is never told twice.
    return await rows_of(
        q, sql, args, lambda v: f"immunization:{v['immunization_id']}:{v['expires_on']}"
    )


immunization_expiration = Notifier(
    name="notifier.immunization_expiration",
    title="Notifier: Immunization Expiration",
    description=(
        "The Immunization Expiration notifier will automatically notify students once when their "
        "immunizations are near expiration based on the threshold chosen. For example, if a "
        "threshold value of 30 days is entered, the notifier will alert any student with an "
        "immunization expiring within 30 days of the day that the notifier is run. Once the "
        "notification is sent to a user, they will not receive additional notifications. "
        "Expiration is based on the data stored in each user's Health record."
    ),
    params=ImmunizationParams,
    select=_immunization,
    columns=(*STUDENT_COLUMNS, ("immunization", "Immunization"), ("expires_on", "Expires")),
    subject="{{ count | counted('immunization') }} expiring within {{ params.threshold_days }} days",
    intro="These immunizations expire within {{ params.threshold_days }} days:",
    student_subject="Your immunization record is about to expire",
    student_intro="According to your health record, these immunizations expire soon. "
    "Please renew them and bring the record to health services:",
    repeat="once_per_item",
)
