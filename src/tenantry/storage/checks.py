"""The checks a store runs on what a caller hands it, before any backend sees it.

Ids are checked by `tenancy.Scope`, numbers by `tenantry._checks.check_int`, session state
by `codec.encode_state` (which must read it anyway); here are the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import timedelta

from tenantry.errors import InvalidInput, InvalidMemory, InvalidMessage
from tenantry.tenancy import id_problem
from tenantry.types import MAX_MEMORY_CHARS, Message, Summary

MAX_SUMMARY_CHARS = 20_000
"""The most characters a session summary may hold."""
MAX_DIMENSIONS = 8_192
"""The most dimensions an embedding may have."""
MAX_QUERY_CHARS = 10_000
"""The most characters a memory search query may hold."""


def check_messages(messages: Iterable[Message]) -> list[Message]:
    """Give the messages as a list, or raise InvalidMessage for anything that is not one."""
    if isinstance(messages, Message):
        raise InvalidMessage("add_many takes a list of messages; use add for one message")
    checked = list(messages)
    for message in checked:
        if not isinstance(message, Message):
            raise InvalidMessage(f"expected a Message, got {type(message).__name__}")
    return checked


def check_age(older_than: timedelta) -> float:
    """Give an age in seconds, or raise InvalidInput if it is not a non-negative timedelta."""
    if not isinstance(older_than, timedelta) or older_than.total_seconds() < 0:
        raise InvalidInput(f"older_than must be a non-negative timedelta, got {older_than!r}")
    return older_than.total_seconds()


def check_memory_text(text: object, what: str = "memory text") -> str:
    """Give `text` if it can be a memory, or raise InvalidMemory saying why not: a str of 1
    to MAX_MEMORY_CHARS characters, not blank, valid Unicode, without NUL characters."""
    return _check_text(text, what, MAX_MEMORY_CHARS)


def check_query(query: object) -> str:
    """Give a search query if it is a str of at most MAX_QUERY_CHARS characters (it may be
    empty: an empty query finds nothing), or raise InvalidMemory."""
    if not isinstance(query, str):
        raise InvalidMemory(f"a search query must be a str, got {type(query).__name__}")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidMemory(
            f"a search query must be at most {MAX_QUERY_CHARS:,} characters, got {len(query):,}"
        )
    return query


def check_memory_id(value: object, what: str = "memory id") -> str:
    """Give a memory (or run) id if it obeys the rule of every id, or raise InvalidMemory."""
    problem = id_problem(value)
    if problem is not None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InvalidMemory(f"{what} {shown} {problem}")
    return value  # type: ignore[return-value]  # id_problem() proved it is a str


def check_version(version: object) -> int | None:
    """Give an expected version (a positive int, or None for "any"), or raise InvalidInput."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInput(f"expected_version must be a positive integer or None, got {version!r}")
    return version


def check_embedding(embedding: object) -> tuple[float, ...] | None:
    """Give an embedding as a tuple of floats (None stays None), or raise InvalidMemory if it
    is not 1 to MAX_DIMENSIONS finite numbers, not all zero."""
    if embedding is None:
        return None
    if isinstance(embedding, str | bytes) or not isinstance(embedding, Sequence):
        raise InvalidMemory(
            f"an embedding must be a list of floats, got {type(embedding).__name__}"
        )
    if not 1 <= len(embedding) <= MAX_DIMENSIONS:
        raise InvalidMemory(
            f"an embedding must have 1 to {MAX_DIMENSIONS:,} dimensions, got {len(embedding):,}"
        )
    vector = []
    for x in embedding:
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise InvalidMemory(f"an embedding must hold finite numbers only, got {x!r}")
        vector.append(float(x))
    if not any(vector):
        raise InvalidMemory("an embedding must not be all zeros (it has no direction)")
    return tuple(vector)


def check_summary(summary: object) -> Summary:
    """Give `summary` if it is a Summary with acceptable text and through_id, or raise
    InvalidMemory."""
    if not isinstance(summary, Summary):
        raise InvalidMemory(f"expected a Summary, got {type(summary).__name__}")
    _check_text(summary.text, "summary text", MAX_SUMMARY_CHARS)
    check_memory_id(summary.through_id, "summary through_id")
    if not isinstance(summary.updated_at, int | float) or not math.isfinite(summary.updated_at):
        raise InvalidMemory(f"summary updated_at must be a time, got {summary.updated_at!r}")
    return summary


def _check_text(text: object, what: str, most: int) -> str:
    if not isinstance(text, str):
        raise InvalidMemory(f"{what} must be a str, got {type(text).__name__}")
    if not text or text.isspace():
        raise InvalidMemory(f"{what} must not be empty or blank")
    if len(text) > most:
        raise InvalidMemory(f"{what} must be at most {most:,} characters, got {len(text):,}")
    if "\x00" in text:
        raise InvalidMemory(f"{what} must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidMemory(
                f"{what} is not valid text: lone surrogate U+{ord(exc.object[exc.start]):04X} "
                f"at position {exc.start}"
            ) from None
    return text


__all__ = [
    "MAX_DIMENSIONS",
    "MAX_QUERY_CHARS",
    "MAX_SUMMARY_CHARS",
    "check_age",
    "check_embedding",
    "check_memory_id",
    "check_memory_text",
    "check_messages",
    "check_query",
    "check_summary",
    "check_version",
]
