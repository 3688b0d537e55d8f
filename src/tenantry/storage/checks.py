"""The checks a store runs on what a caller hands it, before any backend sees it.

Ids are checked by `tenancy.Scope`, numbers by `tenantry._checks.check_int`, session state
by `codec.encode_state` (which must read it anyway); here are the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from tenantry.errors import InvalidInput, InvalidMessage
from tenantry.types import Message


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


__all__ = ["check_age", "check_messages"]
