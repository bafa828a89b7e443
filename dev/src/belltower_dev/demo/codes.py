"""The demo school's fixed code tables and the constants its rows are drawn around."""

from __future__ import annotations

from decimal import Decimal

from .model import DemoData

DEFAULT_SEED = 2026
SCHOOL_DOMAIN = "belltower.edu"

DIVISIONS = [("UG", "Undergraduate"), ("GR", "Graduate"), ("CE", "Continuing Education")]
CAMPUSES = [("MAIN", "Main Campus"), ("NORTH", "North Campus"), ("ONLINE", "Online")]
LEVELS = [
    ("CERT", "Certificate"),
    ("ASSOC", "Associate"),
    ("BACH", "Bachelor"),
    ("MAST", "Master"),
]
DEPARTMENTS = [
    ("MATH", "Mathematics", "UG"), ("ENGL", "English", "UG"), ("BIOL", "Biology", "UG"),
    ("CHEM", "Chemistry", "UG"), ("HIST", "History", "UG"), ("PSYC", "Psychology", "UG"),
    ("BUS", "Business", "GR"), ("CS", "Computer Science", "UG"), ("ART", "Art", "UG"),
    ("NURS", "Nursing", "GR"), ("EDUC", "Education", "GR"), ("MUS", "Music", "CE"),
]  # fmt: skip
COURSE_TOPICS = [
    "Foundations", "Principles", "Methods", "Seminar", "Survey", "Workshop", "Theory",
    "Practicum", "Studio", "Topics", "Research", "Analysis",
]  # fmt: skip
HOLD_TYPES = [
    ("REG", "Registration hold", True, False),
    ("BUS", "Business office hold", True, False),
    ("LIB", "Library fines", False, False),
    ("ADV", "See your advisor", False, True),
    ("TRN", "Missing transcript", False, True),
]
TRANSACTION_CODES = [
    ("TUIT", "Tuition", "charge", False),
    ("FEES", "Student fees", "charge", False),
    ("HOUS", "Housing", "charge", False),
    ("PAY", "Payment", "payment", False),
    ("PELL", "Pell grant", "financial_aid", True),
    ("LOAN", "Direct loan", "financial_aid", True),
    ("SCH", "Institutional scholarship", "financial_aid", False),
    ("REF", "Refund to student", "refund", False),
]
IMMUNIZATIONS = [("MMR", None), ("HEPB", None), ("TDAP", 3650), ("MENACWY", 1825), ("FLU", 365)]
GROUPS = [
    ("REGISTRAR", "Registrar's office", "Enrollment, grades and schedule changes"),
    ("BURSAR", "Bursar's office", "Balances, payments and credit balances"),
    ("ADVISING", "Advising", "Attendance, holds and at-risk students"),
    ("HEALTH", "Health services", "Immunizations"),
    ("ACADEMIC_AFFAIRS", "Academic affairs", "Faculty grading and attendance records"),
    ("ADMISSIONS", "Admissions", "New people and transfer credit"),
]
TRANSFER_SCHOOLS = [
    "Riverside Community College", "State University", "Lakeside College",
    "Northern Technical Institute", "Valley Community College",
]  # fmt: skip
CREDIT_PER_HOUR = Decimal("350.00")
SIS_ID_PREFIX = {"student": "S", "faculty": "F", "staff": "E", "prospect": "P", "alumni": "A"}

DIVISION_ID = {code: i for i, (code, _) in enumerate(DIVISIONS, 1)}


def add_code_tables(data: DemoData) -> None:
    """Divisions, campuses, levels and departments: the demographics every notifier filters on."""
    data.add(
        "divisions", ["id", "code", "name"], [(i, c, n) for i, (c, n) in enumerate(DIVISIONS, 1)]
    )
    data.add(
        "campuses", ["id", "code", "name"], [(i, c, n) for i, (c, n) in enumerate(CAMPUSES, 1)]
    )
    data.add("levels", ["id", "code", "name"], [(i, c, n) for i, (c, n) in enumerate(LEVELS, 1)])
    data.add(
        "departments",
        ["id", "code", "name", "division_id"],
        [(i, c, n, DIVISION_ID[d]) for i, (c, n, d) in enumerate(DEPARTMENTS, 1)],
    )
