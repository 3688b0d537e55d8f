"""Scopes: who a piece of data belongs to, and the rules every user and session id obeys.

A scope is (user_id, session_id). Every stored message and every session state belongs to
exactly one scope. Ids are validated once, here, at the edge of every store call.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

from tenantry.errors import InvalidScope, InvalidSessionId, InvalidUserId

DEFAULT_USER_ID = "default"
DEFAULT_SESSION_ID = "default"
MAX_ID_LENGTH = 255
SCOPE_CACHE_SIZE = 4096
"""Validated scopes remembered by `Scope.of`. A turn builds its scope about four times (the
agent, then the store's lock, snapshot and append), so the cache only has to outlive the
turns in flight; bounded, and it holds ids only."""

# Cc: C0/C1 control characters (NUL, newline, ESC ...); Cs: lone surrogates, which no
# database can store as UTF-8.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs"})


def _problem(value: object) -> str | None:
    """Give what is wrong with an id, or None when it is acceptable."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value or value.isspace():
        return "must not be empty or blank"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}"
    if not value.isprintable():
        for position, char in enumerate(value):
            if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
                return (
                    f"must not contain control characters, found U+{ord(char):04X} "
                    f"at position {position}"
                )
    return None


def id_problem(value: object) -> str | None:
    """Give what is wrong with an id of any kind (user, session, memory, run), or None when
    it is acceptable: the one rule every id obeys."""
    return _problem(value)


def _check(value: object, what: str, error: type[InvalidScope]) -> str:
    problem = _problem(value)
    if problem is not None:
        raise error(f"{what} {_shown(value)} {problem}")
    return value  # type: ignore[return-value]  # _problem() proved it is a str


def validate_user_id(user_id: str | None) -> str:
    """Give the user id to use: the default when None, else the id itself if it is valid."""
    return DEFAULT_USER_ID if user_id is None else _check(user_id, "user id", InvalidUserId)


def validate_session_id(session_id: str | None) -> str:
    """Give the session id to use: the default when None, else the id itself if it is valid."""
    if session_id is None:
        return DEFAULT_SESSION_ID
    return _check(session_id, "session id", InvalidSessionId)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class Scope:
    """The owner of a conversation: one user's one session. Validated on creation."""

    user_id: str = DEFAULT_USER_ID
    session_id: str = DEFAULT_SESSION_ID

    def __post_init__(self) -> None:
        _check(self.user_id, "user id", InvalidUserId)
        _check(self.session_id, "session id", InvalidSessionId)

    @classmethod
    def of(cls, user_id: str | None = None, session_id: str | None = None) -> Scope:
        """Build a scope; None stands for the default user or session."""
        user = DEFAULT_USER_ID if user_id is None else user_id
        session = DEFAULT_SESSION_ID if session_id is None else session_id
        if cls is Scope and type(user) is str and type(session) is str:
            return _validated(user, session)
        return cls(user, session)

    def __str__(self) -> str:
        return f"{self.user_id}/{self.session_id}"


@functools.lru_cache(maxsize=SCOPE_CACHE_SIZE)
def _validated(user_id: str, session_id: str) -> Scope:
    """Give the scope of two str ids, validating them only when they are not remembered
    (an invalid pair raises and is not remembered)."""
    return Scope(user_id, session_id)


__all__ = [
    "DEFAULT_SESSION_ID",
    "DEFAULT_USER_ID",
    "MAX_ID_LENGTH",
    "InvalidScope",
    "InvalidSessionId",
    "InvalidUserId",
    "Scope",
    "id_problem",
    "validate_session_id",
    "validate_user_id",
]
