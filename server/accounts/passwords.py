"""Argon2id password hashing."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import StringConstraints

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so a wrong email costs the same
    time as a wrong password and timing does not reveal which accounts exist. Made at the
    first sign-in of any kind rather than at import: hashing is slow on purpose (~0.15 s),
    and start-up should not wait for it."""
    return _hasher.hash("colabel-no-such-user")

MIN_LENGTH = 8
MAX_LENGTH = 1024

# Passwords are taken exactly as typed: whitespace at either end is part of them (the
# request models strip it from every other string).
NewPassword = Annotated[str, StringConstraints(strip_whitespace=False, min_length=MIN_LENGTH,
                                               max_length=MAX_LENGTH)]
GivenPassword = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1,
                                                 max_length=MAX_LENGTH)]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    dummy = _dummy_hash()
    try:
        return _hasher.verify(stored_hash or dummy, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
