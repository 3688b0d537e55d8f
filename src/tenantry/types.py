"""Pure data: messages, tool calls, usage and budgets, run output, memories and summaries.
No I/O.

Messages are frozen and slotted: a caller that holds a message cannot change what a store
keeps, and a stored message costs little more than its text (see tests/test_types.py).
"""

from __future__ import annotations

import os
import time
from base64 import urlsafe_b64encode
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any, Literal, cast, get_args

from tenantry._checks import check_int
from tenantry.errors import InvalidInput, InvalidMessage

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(get_args(Role))


_ID_BATCH = 256
_DASH = ord("-")
_fresh_ids: deque[str] = deque()
os.register_at_fork(after_in_child=_fresh_ids.clear)  # a child never repeats its parent's ids


def new_id() -> str:
    """Give a fresh random id: 22 URL-safe base64 characters (`A-Z a-z 0-9 - _`) of about
    128 random bits, 10 bytes shorter than hex in every stored message. An id never begins with
    `-` (those 1 in 64 are drawn again), so a command line never takes one for an option.

    The bits come from os.urandom 256 ids at a time: one system call per id would release
    the GIL on every request, and on a busy server the event loop then waits for the store's
    threads to hand it back. `popleft` is atomic, so threads never share an id."""
    while True:
        try:
            return _fresh_ids.popleft()
        except IndexError:
            block = os.urandom(16 * _ID_BATCH)
            ids = (urlsafe_b64encode(block[i : i + 16])[:22] for i in range(0, len(block), 16))
            _fresh_ids.extend(text.decode() for text in ids if text[0] != _DASH)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to call one tool; `arguments` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(id=str(data["id"]), name=str(data["name"]), arguments=str(data["arguments"]))


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation. Immutable; use `dataclasses.replace` to derive one."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidMessage(f"role must be one of {sorted(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise InvalidMessage(f"content must be a str, got {type(self.content).__name__}")
        if not self.content.isascii():
            try:
                self.content.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate: no store could keep it
                raise InvalidMessage(
                    f"content is not valid text: lone surrogate U+{ord(exc.object[exc.start]):04X} "
                    f"at position {exc.start}"
                ) from None
        if not isinstance(self.tool_calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if not self.id:
            object.__setattr__(self, "id", new_id())

    @classmethod
    def _trusted(
        cls,
        role: Role,
        content: str,
        tool_calls: tuple[ToolCall, ...],
        tool_call_id: str | None,
        name: str | None,
        id: str,
        created_at: float,
    ) -> Message:
        """Rebuild a message a store wrote itself, from fields that passed `__post_init__`
        when the message was created, without checking them again (reading 50 messages
        cost more in checks than in the query). Only for a store's own rows, never for
        outside input. The result is the same frozen, slotted Message."""
        message: Message = _new_object(cls)
        _set_role(message, role)
        _set_content(message, content)
        _set_tool_calls(message, tool_calls)
        _set_tool_call_id(message, tool_call_id)
        _set_name(message, name)
        _set_id(message, id)
        _set_created_at(message, created_at)
        return message

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, content: str, *, tool_call_id: str, name: str | None = None) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)

    @property
    def created(self) -> datetime:
        """The creation time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.created_at, UTC)

    def to_dict(self) -> dict[str, Any]:
        """Give a JSON-ready dict; keys with empty values are left out."""
        data: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "created_at": self.created_at,
        }
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from `to_dict` output; raises InvalidMessage on bad data."""
        try:
            calls = tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ())
            return cls(
                role=cast(Role, data["role"]),
                content=data["content"],
                tool_calls=calls,
                tool_call_id=data.get("tool_call_id"),
                name=data.get("name"),
                id=str(data.get("id") or new_id()),
                created_at=float(
                    time.time() if data.get("created_at") is None else data["created_at"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidMessage):
                raise
            raise InvalidMessage(f"not a message: {exc}") from exc


# The slots' own setters, which bypass the frozen __setattr__: what `Message._trusted` uses.
_new_object = object.__new__
(
    _set_role,
    _set_content,
    _set_tool_calls,
    _set_tool_call_id,
    _set_name,
    _set_id,
    _set_created_at,
) = (getattr(Message, f.name).__set__ for f in fields(Message))


MAX_MEMORY_CHARS = 2_000
"""The most characters one memory's text may hold."""


@dataclass(frozen=True, slots=True)
class Memory:
    """One durable fact about a user, kept across sessions; stores create them
    (`Store.add_memory`) and give them back. Immutable: `update_memory` stores a new version.

    `id` is the store's; show a model small local ids instead (1, 2, 3 ...), never this one."""

    id: str
    user_id: str
    text: str
    """1 to MAX_MEMORY_CHARS characters, not blank."""
    created_at: float
    updated_at: float
    version: int = 1
    """1 when added, +1 on every update: what `update_memory(expected_version=...)` compares."""
    session_id: str | None = None
    """The session it was learned in, if any."""
    run_id: str | None = None
    """The run it was learned in, if any."""

    def to_dict(self) -> dict[str, Any]:
        """Give a JSON-ready dict of every field."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "text": self.text,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "session_id": self.session_id,
            "run_id": self.run_id,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """What the messages of a session that fell out of the history window said."""

    text: str
    through_id: str
    """The id of the newest message the summary covers."""
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        """Give a JSON-ready dict of every field."""
        return {"text": self.text, "through_id": self.through_id, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a model is told about one tool: its name, what it does, its JSON-schema arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, request count and tool calls of one or more model calls.

    `input_tokens` counts every input token the provider billed, including those read from
    or written to its prompt cache; `cache_read_tokens` and `cache_write_tokens` say how many
    of them were (0 when the provider does not report it). So `input_tokens` means the same
    for every provider, and `total_tokens` is input plus output. `estimated` is True when any
    part of the counts is an estimate rather than the provider's own report; a sum is
    estimated when any of its parts is."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def empty(self) -> bool:
        """Whether every count is 0 (there is nothing to record)."""
        return not (
            self.requests
            or self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_write_tokens
            or self.tool_calls
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            tool_calls=self.tool_calls + other.tool_calls,
            estimated=self.estimated or other.estimated,
        )

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "tool_calls": self.tool_calls,
            "estimated": self.estimated,
        }


USAGE_COUNTS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tool_calls",
)
"""The counters of `Usage` (every field but `estimated`), in field order: what stores add up."""


@dataclass(frozen=True, slots=True)
class UsageDay:
    """A user's usage of one UTC day."""

    day: date
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        """Give a JSON-ready dict: the day as YYYY-MM-DD and the usage's fields."""
        return {"day": self.day.isoformat(), **self.usage.to_dict()}


BUDGET_LIMITS = ("tokens_per_day", "requests_per_day", "tokens_per_month", "requests_per_month")
"""The limits of `Budget`, in field order."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on a user's usage per UTC day and per UTC month; None means no limit of that
    kind. Tokens are `Usage.total_tokens` (input plus output), requests model requests."""

    tokens_per_day: int | None = None
    requests_per_day: int | None = None
    tokens_per_month: int | None = None
    requests_per_month: int | None = None

    def __post_init__(self) -> None:
        for name in BUDGET_LIMITS:
            check_int(name, getattr(self, name), minimum=0, or_none=True)

    def to_dict(self) -> dict[str, int | None]:
        """Give a JSON-ready dict of every limit (None: no limit)."""
        return {name: getattr(self, name) for name in BUDGET_LIMITS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """Build a budget from `to_dict` output (missing limits are None); raises
        InvalidInput on an unknown key or a limit that is not a non-negative integer."""
        unknown = sorted(set(data) - set(BUDGET_LIMITS))
        if unknown:
            raise InvalidInput(
                f"unknown budget limit(s) {', '.join(map(str, unknown))}; "
                f"known: {', '.join(BUDGET_LIMITS)}"
            )
        return cls(**{name: data.get(name) for name in BUDGET_LIMITS})


@dataclass(frozen=True, slots=True)
class Admission:
    """What a turn's admission reads of a user in one go: today's usage, this month's (both
    UTC) and the user's budget override (None: the defaults apply)."""

    day: Usage
    month: Usage
    budget: Budget | None = None


@dataclass(frozen=True, slots=True)
class RunOutput:
    """The result of one turn: the reply and every message the turn stored."""

    content: str
    user_id: str
    session_id: str
    run_id: str
    messages: tuple[Message, ...]
    usage: Usage = Usage()
    state: Mapping[str, Any] = field(default_factory=dict)
    replayed: bool = False
    """True when the turn was not run again: a retry with its idempotency key got the output
    stored with the turn (see `Agent.arun`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "messages": [m.to_dict() for m in self.messages],
            "usage": self.usage.to_dict(),
            "state": dict(self.state),
        }
