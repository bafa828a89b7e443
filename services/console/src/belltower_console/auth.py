"""Passwords, logins, tokens and who may do what.

Passwords are argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory profile). Roles are
ordered: each can do what the ones before it can.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from belltower.api import FieldError

from .errors import FieldErrors
from .store import ROLES

hasher = PasswordHasher()
USERNAME = re.compile(r"\A[A-Za-z0-9._@-]{1,64}\Z")
"""Anchored with \\A and \\Z (not ^ and $, which let "admin\\n" through); use fullmatch."""
MIN_PASSWORD = 10
MAX_PASSWORD = 256
"""Longer passwords are refused: hashing megabytes on every login is a cheap way to load a server."""


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of the most common passwords, in lower case."""
    text = resources.files("belltower_console").joinpath("common_passwords.txt").read_text()
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def password_problem(password: str, username: str | None) -> str | None:
    """Why ``password`` is refused as a new password, or None."""
    if len(password) < MIN_PASSWORD:
        return f"is shorter than {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"is longer than {MAX_PASSWORD} characters"
    if not password.strip():
        return "is only whitespace"
    if len(set(password)) == 1:
        return "is one character repeated"
    lowered = password.lower()
    if username and lowered.startswith(username.lower()):
        rest = lowered[len(username) :]
        if not any(ch.isalpha() for ch in rest):
            return "is the user name (with only digits or symbols added)"
    if lowered in common_passwords() or lowered.strip() in common_passwords():
        return "is one of the most common passwords"
    return None


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


def check_new_user(
    username: str | None,
    password: str | None,
    role: str | None,
    for_user: str | None = None,
) -> None:
    """Every problem with a new user's fields (or, for ``for_user``, a changed password or
    role) at once; raises FieldErrors."""
    errors = []
    if username is not None and not USERNAME.fullmatch(username):
        errors.append(
            FieldError(
                field="username",
                message=f"{username!r} is not a user name",
                accepted="1 to 64 letters, digits, '.', '_', '@' or '-'",
            )
        )
    problem = password_problem(password, username or for_user) if password is not None else None
    if problem:
        errors.append(
            FieldError(
                field="password",
                message=problem,
                accepted=f"{MIN_PASSWORD} to {MAX_PASSWORD} characters, not the user name, "
                "not a common password (a few unrelated words make a good one)",
            )
        )
    if role is not None and role not in ROLES:
        errors.append(
            FieldError(field="role", message=f"{role!r} is not a role", accepted=", ".join(ROLES))
        )
    if errors:
        raise FieldErrors(errors)
