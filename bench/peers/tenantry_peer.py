"""tenantry: one `Agent` on `open_store("sqlite:///...")`, a `FunctionModel` as the fake model.

A turn is `await agent.arun(text, user_id=..., session_id=...)`; the agent reads the newest
`history_window` (50) messages and writes the user message and the reply in one `add_many`,
so pre-filled history is that same pair of messages per turn, written with `add_many`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.peers import REPLY, Recorder, connect
from tenantry import Agent, FunctionModel, Message, open_store
from tenantry.storage.base import Store
from tenantry.types import ToolSpec

_COLUMNS = "id, role, content, tool_calls, tool_call_id, name, created_at"


class TenantryPeer:
    """tenantry's Agent on its SQLiteStore."""

    name = "tenantry"

    def __init__(self) -> None:
        self.settings = {
            "agent": "tenantry.Agent, history_window=50 messages (the default)",
            "storage": "open_store('sqlite:///…'): SQLiteStore, WAL, synchronous=NORMAL (default)",
            "fake model": "FunctionModel answering the fixed reply",
            "concurrency": "turns of different scopes run in parallel; SQLite reads run on 2 "
            "reader threads, writes on one writer thread, so the event loop never waits on disk",
        }
        self._recorder = Recorder()
        self._path: Path | None = None
        self._store: Store | None = None
        self._agent: Agent | None = None

    def _answer(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> str:
        self._recorder.messages = messages
        return REPLY

    def store_url(self, path: Path) -> str:
        """The URL of the store `open(path)` opens."""
        return f"sqlite:///{path}"

    async def open(self, path: Path) -> None:
        self._path = path
        self._store = open_store(self.store_url(path))
        self._agent = Agent(name="bench", model=FunctionModel(self._answer), store=self._store)

    async def turn(self, user_id: str, session_id: str, text: str) -> str:
        assert self._agent is not None
        output = await self._agent.arun(text, user_id=user_id, session_id=session_id)
        return output.content

    async def prefill(self, user_id: str, session_id: str, texts: Sequence[str]) -> None:
        assert self._store is not None
        messages = [m for text in texts for m in (Message.user(text), Message.assistant(REPLY))]
        await self._store.add_many(messages, user_id=user_id, session_id=session_id)

    async def add_tenants(self, user_ids: Sequence[str], session_id: str) -> None:
        assert self._path is not None
        template, others = user_ids[0], user_ids[1:]
        await self.turn(template, session_id, "Hello")
        conn = connect(self._path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            (scope_id,) = conn.execute(
                "SELECT scope_id FROM scopes WHERE user_id = ? AND session_id = ?",
                (template, session_id),
            ).fetchone()
            conn.executemany(
                "INSERT INTO scopes (user_id, session_id, state, message_count, updated_at) "
                "SELECT ?, session_id, state, message_count, updated_at FROM scopes "
                "WHERE scope_id = ?",
                ((user_id, scope_id) for user_id in others),
            )
            conn.executemany(
                f"INSERT INTO messages (scope_id, {_COLUMNS}) "
                "SELECT s.scope_id, lower(hex(randomblob(16))), m.role, m.content, "
                "m.tool_calls, m.tool_call_id, m.name, m.created_at "
                "FROM scopes AS s, messages AS m "
                "WHERE s.user_id = ? AND s.session_id = ? AND m.scope_id = ? ORDER BY m.seq",
                ((user_id, session_id, scope_id) for user_id in others),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def stored_turns(self, user_id: str, session_id: str) -> int:
        assert self._store is not None
        return await self._store.size(user_id, session_id) // 2

    def model_input(self) -> list[str]:
        return [message.content for message in self._recorder.messages]

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
        self._store = self._agent = None


def adapter() -> TenantryPeer:
    return TenantryPeer()
