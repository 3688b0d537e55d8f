"""How a store turns messages, state, summaries and vectors into text or bytes and back.

Every backend stores a message either as one JSON text (`encode_message`; PostgreSQL, Redis)
or as columns with the tool calls as JSON (`encode_tool_calls`; SQLite), a session state and
a session summary as JSON text (`encode_state`, `encode_summary`), and a memory's embedding
as unit-length float32 bytes (`encode_vector`). Decoding trusts the text: it is the store's
own data, written by these functions from values that were checked, so its fields are not
checked again.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

from tenantry.errors import InvalidState
from tenantry.types import Message, RunOutput, Summary, ToolCall, Usage


def encode_state(state: Mapping[str, Any]) -> str:
    """Give the JSON text of a session state, or raise InvalidState saying why it is not one."""
    if not isinstance(state, Mapping):
        raise InvalidState(f"session state must be a dict, got {type(state).__name__}")
    for key in state:
        if not isinstance(key, str):
            raise InvalidState(f"session state keys must be strings, got {key!r}")
    try:
        return json.dumps(state, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidState(f"session state must be JSON-serialisable: {exc}") from exc


def decode_state(text: str | None) -> dict[str, Any]:
    """Give the dict a stored state text stands for ({} when there is none)."""
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def encode_message(message: Message) -> str:
    """Give a message as compact JSON text. Control characters come out escaped, so any
    database's text type can hold it (PostgreSQL's cannot hold a NUL character)."""
    return json.dumps(message.to_dict(), ensure_ascii=False, separators=(",", ":"))


def decode_message(text: str | bytes) -> Message:
    """Give the message that `encode_message` turned into `text`."""
    return _message(json.loads(text))


def _message(data: dict[str, Any]) -> Message:
    return Message._trusted(
        data["role"],
        data["content"],
        _tool_calls(data.get("tool_calls")),
        data.get("tool_call_id"),
        data.get("name"),
        data["id"],
        float(data["created_at"]),
    )


def encode_tool_calls(calls: Sequence[ToolCall]) -> str | None:
    """Give a message's tool calls as JSON text, or None when it has none."""
    return json.dumps([c.to_dict() for c in calls], ensure_ascii=False) if calls else None


def decode_tool_calls(text: str | None) -> tuple[ToolCall, ...]:
    """Give the tool calls that `encode_tool_calls` turned into `text`."""
    return _tool_calls(json.loads(text)) if text else ()


def _tool_calls(calls: list[dict[str, str]] | None) -> tuple[ToolCall, ...]:
    """Give the tool calls of their stored dicts: the one place a stored call is rebuilt."""
    return tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in calls) if calls else ()


def encode_summary(summary: Summary) -> str:
    """Give a session summary as compact JSON text."""
    return json.dumps(summary.to_dict(), ensure_ascii=False, separators=(",", ":"))


def decode_summary(text: str | bytes | None) -> Summary | None:
    """Give the summary `encode_summary` turned into `text` (None for no text)."""
    if not text:
        return None
    data = json.loads(text)
    return Summary(data["text"], data["through_id"], float(data["updated_at"]))


def encode_output(output: RunOutput) -> str:
    """Give a turn's output as compact JSON text (for its idempotency record)."""
    data = output.to_dict()
    del data["user_id"]  # the record's key holds it
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode_output(text: str | bytes, user_id: str) -> RunOutput:
    """Give the output `encode_output` turned into `text`, marked as replayed."""
    data = json.loads(text)
    usage = {k: v for k, v in data["usage"].items() if k != "total_tokens"}
    return RunOutput(
        content=data["content"],
        user_id=user_id,
        session_id=data["session_id"],
        run_id=data["run_id"],
        messages=tuple(_message(m) for m in data["messages"]),
        usage=Usage(**usage),
        state=data["state"],
        replayed=True,
    )


def encode_vector(vector: Sequence[float]) -> bytes:
    """Give a vector scaled to unit length as little-endian float32 bytes, 4 bytes a
    dimension. The vector was checked non-zero and finite (`checks.check_embedding`)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    packed = array("f", [x / norm for x in vector])
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def decode_vector(data: bytes) -> array[float]:
    """Give the vector `encode_vector` turned into `data`."""
    vector = array("f")
    vector.frombytes(data)
    if _BIG_ENDIAN:
        vector.byteswap()
    return vector


_BIG_ENDIAN = sys.byteorder == "big"


__all__ = [
    "decode_message",
    "decode_output",
    "decode_state",
    "decode_summary",
    "decode_tool_calls",
    "decode_vector",
    "encode_message",
    "encode_output",
    "encode_state",
    "encode_summary",
    "encode_tool_calls",
    "encode_vector",
]
