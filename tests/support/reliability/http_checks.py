"""What every HTTP response must satisfy, whatever was sent: no internals in the body, the
documented error shape, and nothing stored for a rejected request. Shared by the HTTP fuzz
tests and the schemathesis checks."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import tenantry
from tenantry._runner import run_sync
from tenantry.storage.base import Store
from tests.support.env import ROOT

_TRACE = re.compile(
    r"Traceback \(most recent call last\)"
    r'|File "[^"\n]*", line \d+'
    r"|\.py\"?, line \d+"
    r"|site-packages"
    r"|dist-packages"
    r"|\b(?:Attribute|Key|Type|Index|Name|Runtime|Assertion|Value)Error\('"
    r"|<[\w.]+ object at 0x[0-9a-f]+>"
)
_INTERNAL_PATHS = tuple(
    {
        str(Path(tenantry.__file__).resolve().parent.parent),  # the source tree
        str(ROOT),  # the checkout
        sys.prefix,
        sys.base_prefix,
    }
    - {"", "/", "/usr"}
)

Contents = dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], str]]
"""Every scope of a store: its messages (role, content) and its state as JSON."""


def leaked_internals(body: str, sent: str = "") -> str | None:
    """Give the first sign of a stack trace or an internal path in a response body, unless
    the request itself (`sent`) carried that text (an id echoed back is not a leak)."""
    for found in _TRACE.finditer(body):
        if found.group(0) not in sent:
            return found.group(0)
    for path in _INTERNAL_PATHS:
        if path in body and path not in sent:
            return path
    return None


def _jsonrpc_problem(status: int, document: dict[str, Any], body: bytes) -> str | None:
    """What is wrong with a JSON-RPC error envelope whose ErrorInfo names the error type."""
    error = document.get("error")
    if document.get("jsonrpc") != "2.0" or "id" not in document or not isinstance(error, dict):
        return f"a {status} on the JSON-RPC endpoint is not a JSON-RPC error: {body[:200]!r}"
    data = error.get("data")
    info = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    kind = info.get("metadata", {}).get("type")
    if not isinstance(error.get("code"), int) or not error.get("message") or not kind:
        return f"a {status} JSON-RPC error lacks a code, message or type: {body[:200]!r}"
    return None


def error_shape_problem(
    status: int, content_type: str, body: bytes, *, jsonrpc: bool = False
) -> str | None:
    """Give what is wrong with a 4xx/5xx response's body, or None if it is the documented
    `{"error": {"type": str, "message": str}}` (on the A2A JSON-RPC endpoint, `jsonrpc`: a
    JSON-RPC error whose `data[0].metadata.type` is the type)."""
    if status < 400:
        return None
    if not content_type.startswith("application/json"):
        return f"a {status} answered with {content_type!r}, not JSON"
    try:
        document = json.loads(body)
    except ValueError:
        return f"a {status} body is not JSON: {body[:100]!r}"
    if jsonrpc and isinstance(document, dict):
        return _jsonrpc_problem(status, document, body)
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return f"a {status} body has no 'error' object: {body[:200]!r}"
    if not isinstance(error.get("type"), str) or not isinstance(error.get("message"), str):
        return f"a {status} error lacks a string 'type' or 'message': {body[:200]!r}"
    if not error["type"] or not error["message"]:
        return f"a {status} error has an empty 'type' or 'message': {body[:200]!r}"
    return None


async def read_contents(store: Store) -> Contents:
    """Give everything `store` holds, scope by scope."""
    contents: Contents = {}
    for user in await store.list_users():
        for session in await store.list_sessions(user):
            snapshot = await store.snapshot(user, session)
            messages = tuple((m.role, m.content) for m in snapshot.messages)
            contents[(user, session)] = (messages, json.dumps(snapshot.state, sort_keys=True))
    return contents


def contents_of(store: Store) -> Contents:
    """`read_contents` from synchronous code (the store must be usable from any loop)."""
    return run_sync(read_contents(store))


def changed_scopes(before: Contents, after: Contents) -> set[tuple[str, str]]:
    """Give the scopes whose messages or state differ, or that appeared or went."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def describe_change(before: Contents, after: Contents) -> dict[str, Any]:
    return {
        repr(key): {"before": before.get(key), "after": after.get(key)}
        for key in sorted(changed_scopes(before, after))[:5]
    }
