"""Adapters that run one chat turn on tenantry and on its peers, the same way.

One module per framework (`tenantry_peer`, `agno_peer`, `openai_agents_peer`,
`langgraph_peer`), each with a class that implements `Peer`: it opens the framework on one
SQLite file, runs turns through the framework's own agent API with a deterministic in-process
fake model that always answers `REPLY`, pre-fills history exactly as the framework itself
stores a turn, and adds other tenants in bulk (one real turn, cloned row by row).

`load(name)` gives the adapter, or raises `PeerUnavailable` saying why (the framework is not
installed). `check_reads_history` is the sanity check every measurement starts with: a peer
whose fake model does not see the previous turn would make its figures worthless.

agno, the Agents SDK and LangGraph key a conversation by one id; their adapters use
`scope_key(user_id, session_id)` for it, so sessions of different users never share history.
"""

from __future__ import annotations

import importlib
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

REPLY = "Noted."
"""What every fake model answers: the same trivial work in every framework."""

PEERS: dict[str, str] = {
    "tenantry": "tenantry_peer",
    "agno": "agno_peer",
    "openai-agents": "openai_agents_peer",
    "langgraph": "langgraph_peer",
}
"""Framework name → adapter module under bench.peers."""

_DISTRIBUTIONS = {
    "tenantry": "tenantry",
    "agno": "agno",
    "openai-agents": "openai-agents",
    "langgraph": "langgraph langgraph-checkpoint-sqlite aiosqlite",
}


class PeerUnavailable(Exception):
    """The framework cannot be measured here; the message says why and how to fix it."""


class HistoryNotRead(AssertionError):
    """A peer's fake model did not receive the conversation's earlier messages."""


@runtime_checkable
class Peer(Protocol):
    """One framework, driven the same way as the others."""

    name: str
    settings: dict[str, str]
    """How the framework is configured, in words, for the results."""

    async def open(self, path: Path) -> None:
        """Open the framework's agent on the SQLite file at `path` (created if missing)."""
        ...

    async def turn(self, user_id: str, session_id: str, text: str) -> str:
        """Run one turn through the framework's agent; give the reply."""
        ...

    async def prefill(self, user_id: str, session_id: str, texts: Sequence[str]) -> None:
        """Append one turn per text (the text, then `REPLY`), stored exactly as the
        framework stores a real turn, in bulk."""
        ...

    async def add_tenants(self, user_ids: Sequence[str], session_id: str) -> None:
        """Give each user one stored turn: a real turn for the first, cloned for the rest."""
        ...

    async def stored_turns(self, user_id: str, session_id: str) -> int:
        """Give the number of turns the framework holds for the conversation."""
        ...

    def model_input(self) -> list[str]:
        """Give the texts of the messages the fake model received on its last call."""
        ...

    async def close(self) -> None:
        """Close what `open` opened."""
        ...


class Recorder:
    """What a fake model received on its last call. Frameworks that copy their model per
    run (deepcopy) copy a reference to the same recorder."""

    __slots__ = ("messages",)

    def __init__(self) -> None:
        self.messages: Sequence[Any] = ()

    def __copy__(self) -> Recorder:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Recorder:
        return self


def load(name: str) -> Peer:
    """Give a fresh adapter for the framework, or raise PeerUnavailable saying why."""
    if name not in PEERS:
        raise PeerUnavailable(f"no adapter for {name!r}; known: {', '.join(PEERS)}")
    try:
        module = importlib.import_module(f"bench.peers.{PEERS[name]}")
    except ImportError as exc:
        raise PeerUnavailable(
            f"{name} is not installed ({exc}); pip install {_DISTRIBUTIONS[name]} "
            "(or the bench extra: pip install -e '.[all,bench]')"
        ) from exc
    peer: Peer = module.adapter()
    return peer


def scope_key(user_id: str, session_id: str) -> str:
    """Give the one conversation id for frameworks that key history by a single id."""
    return f"{user_id}:{session_id}"


async def check_reads_history(peer: Peer, user_id: str = "probe-history") -> None:
    """Raise HistoryNotRead unless the second turn's model input holds the first turn."""
    marker = f"My name is Probe-{uuid.uuid4().hex[:8]}"
    await peer.turn(user_id, "main", marker)
    reply = await peer.turn(user_id, "main", "What is my name?")
    seen = peer.model_input()
    if marker not in seen or reply != REPLY:
        raise HistoryNotRead(
            f"{peer.name}: the second turn's model input {seen!r} lacks {marker!r} "
            f"(or the reply {reply!r} is not {REPLY!r}): the adapter does not read history"
        )
    stored = await peer.stored_turns(user_id, "main")
    if stored != 2:
        raise HistoryNotRead(f"{peer.name}: expected 2 stored turns, found {stored}")


def database_bytes(path: Path) -> int:
    """Give the SQLite database's size: page count × page size, as read now through a new
    connection. That is the file's size once the WAL is checkpointed into it."""
    with sqlite3.connect(path) as conn:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(pages) * int(size)


def connect(path: Path) -> sqlite3.Connection:
    """Give a connection for bulk writes next to the framework's own connections."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def clone_rows(
    conn: sqlite3.Connection,
    table: str,
    where: str,
    params: Sequence[Any],
    renames: Iterable[Mapping[str, str]],
    *,
    drop: Iterable[str] = (),
) -> int:
    """Copy the rows of `table` matching `where` once per mapping in `renames`, replacing each
    mapping's old strings by its new ones in every text value; columns in `drop`
    (autoincrement keys) are left for SQLite to fill. Gives the number of rows written."""
    cursor = conn.execute(f"SELECT * FROM {table} WHERE {where}", params)
    dropped = set(drop)
    columns = [d[0] for d in cursor.description]
    keep = [i for i, column in enumerate(columns) if column not in dropped]
    rows = [tuple(row[i] for i in keep) for row in cursor.fetchall()]
    names = ", ".join(columns[i] for i in keep)
    marks = ", ".join("?" * len(keep))
    written = 0

    def rewritten() -> Iterator[tuple[Any, ...]]:
        nonlocal written
        for mapping in renames:
            for row in rows:
                written += 1
                yield tuple(_rename(value, mapping) for value in row)

    conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rewritten())
    return written


def _rename(value: Any, mapping: Mapping[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    for old, new in mapping.items():
        value = value.replace(old, new)
    return value


def texts_of(messages: Iterable[Any], text: Callable[[Any], Any]) -> list[str]:
    """Give the string contents `text` finds in each message (lists are flattened)."""
    found: list[str] = []
    for message in messages:
        content = text(message)
        if isinstance(content, str):
            found.append(content)
        elif isinstance(content, list):
            found.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return found


__all__ = [
    "PEERS",
    "REPLY",
    "HistoryNotRead",
    "Peer",
    "PeerUnavailable",
    "Recorder",
    "check_reads_history",
    "clone_rows",
    "connect",
    "database_bytes",
    "load",
    "scope_key",
    "texts_of",
]
