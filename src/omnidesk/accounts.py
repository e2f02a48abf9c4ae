"""Passwords: argon2id hashing (argon2-cffi) and the rules a password must meet.

Hashing costs tens of milliseconds of CPU on purpose; callers in the event loop
run :func:`verify_password` in a worker thread.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024

_hasher = PasswordHasher()  # argon2id with the library's current recommended costs


class PasswordError(ValueError):
    pass


def check_password_rules(password: str, username: str | None = None) -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"a password has at most {MAX_LENGTH} characters")
    if username and password.lower() == username.lower():
        raise PasswordError("the password must differ from the username")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``. With no stored hash (unknown
    user, account without a password) a dummy hash is checked anyway, so the
    answer takes as long and reveals nothing about which usernames exist."""
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def random_password() -> str:
    return secrets.token_urlsafe(15)
