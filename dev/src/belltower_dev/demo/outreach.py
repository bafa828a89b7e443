"""Who the school tells and when: notification groups, registration appointments, timed e-mails."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from .codes import GROUPS
from .enrollments import Registration
from .model import Draw, Row


def add_notification_groups(draw: Draw, staff: list[int]) -> None:
    """Each office's group has three staff members, half of them also by reminder."""
    rng = draw.rng
    draw.data.add(
        "notification_groups",
        ["id", "code", "name", "description"],
        [(i, c, n, d) for i, (c, n, d) in enumerate(GROUPS, 1)],
    )
    members: list[Row] = []
    for gid in range(1, len(GROUPS) + 1):
        for person in rng.sample(staff, 3):
            members.append((gid, person, True, rng.random() < 0.5))
    draw.data.add(
        "notification_group_members", ["group_id", "person_id", "by_email", "by_reminder"], members
    )


def add_registration_appointments(
    draw: Draw, terms: list[Row], reg: Registration, students: list[int]
) -> None:
    """Next term's registration windows: everyone enrolled for it, and half of the others."""
    rng = draw.rng
    appointments: list[Row] = []
    next_start = terms[2][3]
    for student in students:
        if (student, 3) in reg.term_credits or rng.random() < 0.5:
            starts = datetime.combine(
                next_start - timedelta(days=rng.randint(20, 60)), time(8, 0), UTC
            )
            appointments.append((student, 3, starts, starts + timedelta(days=14)))
    draw.data.add(
        "registration_appointments", ["person_id", "term_id", "starts_at", "ends_at"], appointments
    )


def add_email_activities(draw: Draw) -> None:
    """Two timed e-mails: one due today, one in a week."""
    today = draw.today
    draw.data.add(
        "email_activities",
        ["code", "subject", "body_text", "body_html", "send_on", "statuses"],
        [
            ("ADVISING_WEEK", "Advising week starts today",
             "Dear {{ first_name }},\n\nadvising week starts today: book a slot with your advisor.\n",
             None, today, ["student"]),
            ("FAFSA", "Renew your FAFSA",
             "Dear {{ first_name }},\n\nthe FAFSA for next year is open. Renew it before the deadline.\n",
             None, today + timedelta(days=7), ["student"]),
        ],
    )  # fmt: skip
