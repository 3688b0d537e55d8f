"""The OpenAI Agents SDK: `Runner.run` with a `SQLiteSession` per conversation, tracing off, a
`Model` implementation as the fake model.

A turn is `await Runner.run(agent, text, session=session)`: the runner reads the session's
items (all of them, with the default `SessionSettings`), sends them with the new input to the
model and appends the new input and output items with `add_items`. Pre-filled history is those
same items, built with the SDK's own converters and written with one `add_items`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    ItemHelpers,
    RunConfig,
    Runner,
    SQLiteSession,
    Usage,
    set_tracing_disabled,
)
from agents.items import ModelResponse, TResponseInputItem
from agents.models.interface import Model
from agents.testing import assistant_message

from bench.peers import REPLY, Recorder, clone_rows, connect, scope_key, texts_of


class EchoModel(Model):
    """The Agents SDK's fake model: records its input and answers the fixed reply."""

    def __init__(self) -> None:
        self.recorder = Recorder()

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        given = kwargs.get("input", args[1] if len(args) > 1 else ())
        self.recorder.messages = given if isinstance(given, list) else [given]
        return reply_response()

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the benchmark does not stream")
        yield  # pragma: no cover


def reply_response() -> ModelResponse:
    """Give the model response a real model would: one message item with a fresh id."""
    return ModelResponse(
        output=[assistant_message(REPLY, item_id=f"msg_{uuid.uuid4().hex}")],
        usage=Usage(),
        response_id=None,
    )


class NormalSyncSession(SQLiteSession):
    """SQLiteSession whose connections use synchronous=NORMAL, like tenantry's, instead of the
    default FULL (an fsync per commit), so the comparison measures the frameworks."""

    @staticmethod
    def _configure_connection(conn: sqlite3.Connection) -> None:
        SQLiteSession._configure_connection(conn)
        conn.execute("PRAGMA synchronous = NORMAL")


class OpenAIAgentsPeer:
    """The OpenAI Agents SDK's Runner on SQLiteSession."""

    name = "openai-agents"

    def __init__(self) -> None:
        set_tracing_disabled(True)
        self.settings = {
            "agent": "agents.Agent run by Runner.run(agent, text, session=…), "
            "RunConfig(tracing_disabled=True), set_tracing_disabled(True)",
            "storage": "SQLiteSession(f'{user}:{session}', file) per conversation, kept open; "
            "default SessionSettings (the whole session is read); WAL; synchronous=NORMAL "
            "set per connection (the SDK's default FULL fsyncs every commit)",
            "fake model": "agents.models.interface.Model subclass answering the fixed reply",
            "concurrency": "SQLiteSession runs each query in asyncio.to_thread under one lock "
            "per database file, so the queries of concurrent turns run one at a time",
        }
        self._model = EchoModel()
        self._agent: Agent[Any] = Agent(name="bench", model=self._model)
        self._run_config = RunConfig(tracing_disabled=True)
        self._path: Path | None = None
        self._sessions: dict[str, SQLiteSession] = {}

    def _session(self, user_id: str, session_id: str) -> SQLiteSession:
        assert self._path is not None
        key = scope_key(user_id, session_id)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = NormalSyncSession(key, self._path)
        return session

    async def open(self, path: Path) -> None:
        self._path = path

    async def turn(self, user_id: str, session_id: str, text: str) -> str:
        result = await Runner.run(
            self._agent,
            text,
            session=self._session(user_id, session_id),
            run_config=self._run_config,
        )
        return str(result.final_output)

    async def prefill(self, user_id: str, session_id: str, texts: Sequence[str]) -> None:
        items: list[TResponseInputItem] = []
        for text in texts:
            items += ItemHelpers.input_to_new_input_list(text)
            items += reply_response().to_input_items()
        await self._session(user_id, session_id).add_items(items)

    async def add_tenants(self, user_ids: Sequence[str], session_id: str) -> None:
        assert self._path is not None
        template, others = user_ids[0], user_ids[1:]
        await self.turn(template, session_id, "Hello")
        key = scope_key(template, session_id)
        renames = [{template: user_id} for user_id in others]
        conn = connect(self._path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            clone_rows(conn, "agent_sessions", "session_id = ?", (key,), renames)
            clone_rows(conn, "agent_messages", "session_id = ?", (key,), renames, drop=["id"])
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def stored_turns(self, user_id: str, session_id: str) -> int:
        return len(await self._session(user_id, session_id).get_items()) // 2

    def model_input(self) -> list[str]:
        return texts_of(self._model.recorder.messages, lambda item: item.get("content"))

    async def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


def adapter() -> OpenAIAgentsPeer:
    return OpenAIAgentsPeer()
