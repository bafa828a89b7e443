"""Passwords, logins, tokens and who may do what.

Passwords are argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory profile). Roles are
ordered: each can do what the ones before it can.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from belltower.api import FieldError

from .errors import FieldErrors
from .store import ROLES

hasher = PasswordHasher()
USERNAME = re.compile(r"\A[A-Za-z0-9._@-]{1,64}\Z")
"""Anchored with \\A and \\Z (not ^ and $, which let "admin\\n" through); use fullmatch."""
MIN_PASSWORD = 10

ROLE_CAN = {
    "viewer": "see jobs, job types, execution history and output; export",
    "operator": "also run now, pause and resume",
    "editor": "also create, edit, delete and import jobs",
    "admin": "also manage users and API tokens, and read the audit log",
}

# A hash of a random password, verified when the user does not exist, so a wrong user name
# takes as long as a wrong password.
_DUMMY = hasher.hash("belltower-no-such-user")


def hash_password(password: str) -> str:
    return hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    try:
        return hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def check_new_user(username: str | None, password: str | None, role: str | None) -> None:
    """Every problem with a new user's fields at once; raises FieldErrors."""
    errors = []
    if username is not None and not USERNAME.fullmatch(username):
        errors.append(
            FieldError(
                field="username",
                message=f"{username!r} is not a user name",
                accepted="1 to 64 letters, digits, '.', '_', '@' or '-'",
            )
        )
    if password is not None and len(password) < MIN_PASSWORD:
        errors.append(
            FieldError(
                field="password",
                message=f"is shorter than {MIN_PASSWORD} characters",
                accepted=f"at least {MIN_PASSWORD} characters",
            )
        )
    if role is not None and role not in ROLES:
        errors.append(
            FieldError(field="role", message=f"{role!r} is not a role", accepted=", ".join(ROLES))
        )
    if errors:
        raise FieldErrors(errors)
