"""``generate``: every part of the demo school, drawn in turn from one seeded Random."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

from .attendance import add_attendance
from .billing import add_billing_records
from .calculations import add_calculation_data
from .codes import DEFAULT_SEED, add_code_tables
from .courses import add_courses, add_terms, draw_sections
from .enrollments import add_registration
from .erp import add_erp_finance
from .finance import add_transactions
from .gradebooks import add_combined_gradebooks
from .guardians import add_guardians
from .mailing import add_mailing_lists
from .model import DemoData, DemoSize, Draw, Pools
from .offices import add_office_records
from .outreach import add_email_activities, add_notification_groups, add_registration_appointments
from .people import add_people
from .records import add_holds, add_immunizations, add_transfer_credits
from .schedules import add_schedule_records
from .school_ops import add_school_operations


def generate(
    today: date | None = None, *, seed: int = DEFAULT_SEED, size: DemoSize | None = None
) -> DemoData:
    """Every demo row for a school whose current term is in progress on ``today``.

    The parts draw from the same Random one after the other, so their order is part of the
    output: reordering them changes every row after the move.
    """
    today = today or datetime.now(UTC).date()
    draw = Draw(today, random.Random(seed), Pools(seed), DemoData(today=today, seed=seed))
    add_code_tables(draw.data)
    people = add_people(draw, size or DemoSize())
    students, faculty, staff = people["student"], people["faculty"], people["staff"]
    terms = add_terms(draw)
    courses = add_courses(draw)
    offering = draw_sections(draw, terms, courses, faculty)
    reg = add_registration(draw, offering, students)
    add_attendance(draw, offering, reg, students)
    add_holds(draw, students)
    add_transactions(draw, terms, reg, students)
    add_immunizations(draw, students)
    add_transfer_credits(draw, students)
    add_notification_groups(draw, staff)
    add_registration_appointments(draw, terms, reg, students)
    add_email_activities(draw)
    add_guardians(draw)
    add_office_records(draw, people)
    add_calculation_data(draw.data)
    add_mailing_lists(draw, people)
    add_combined_gradebooks(draw.data)
    add_school_operations(draw.data)
    add_billing_records(draw, students)
    add_erp_finance(draw.data)
    add_schedule_records(draw.data)
    return draw.data
