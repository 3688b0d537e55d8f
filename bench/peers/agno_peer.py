"""agno: its `Agent` on `SqliteDb`, history added to the context, a `Model` subclass as the
fake model.

A turn is `await agent.arun(text, user_id=..., session_id=...)`. agno keeps one row per
session in `agno_sessions` and one row per run in `agno_runs` (the run's messages and metadata
as JSON); a turn reads the session with all its runs (unchanged rows come from a per-database
object cache), puts the newest `num_history_runs` runs' messages in the prompt, and writes the
new run and the session. Pre-filled history is that run row, cloned from a real run and built
with agno's own `build_single_run_row` and JSON serializer.

`SqliteDb` is synchronous: inside `arun` its queries block the event loop, so concurrent turns
do not overlap their storage work (agno also ships `AsyncSqliteDb`, on aiosqlite).
"""

from __future__ import annotations

import os

os.environ["AGNO_TELEMETRY"] = "false"  # read when agno builds an agent; set before importing

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agno.agent import Agent
from agno.db.sqlite import SqliteDb
from agno.db.utils import build_single_run_row, json_serializer
from agno.models.base import Model
from agno.models.response import ModelResponse
from sqlalchemy import event

from bench.peers import REPLY, Recorder, clone_rows, connect, scope_key

HISTORY_RUNS = 25
"""Runs of history in the prompt: 50 messages, tenantry's default window."""


@dataclass
class EchoModel(Model):
    """agno's fake model: records its input and answers the fixed reply."""

    id: str = "echo"
    name: str | None = "echo"
    provider: str | None = "bench"
    recorder: Recorder = field(default_factory=Recorder)

    def invoke(self, *args: Any, **kwargs: Any) -> ModelResponse:
        # A copy: agno appends the reply to this very list after the call.
        self.recorder.messages = list(kwargs["messages"])
        return ModelResponse(role="assistant", content=REPLY)

    async def ainvoke(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return self.invoke(*args, **kwargs)

    def invoke_stream(self, *args: Any, **kwargs: Any) -> Iterator[ModelResponse]:
        yield self.invoke(*args, **kwargs)

    async def ainvoke_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ModelResponse]:
        yield self.invoke(*args, **kwargs)

    def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        return response  # type: ignore[no-any-return]

    def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
        return response  # type: ignore[no-any-return]


class AgnoPeer:
    """agno's Agent on SqliteDb."""

    name = "agno"

    def __init__(self) -> None:
        self.settings = {
            "agent": f"agno.Agent, add_history_to_context=True, num_history_runs={HISTORY_RUNS} "
            f"(= {2 * HISTORY_RUNS} messages), telemetry off",
            "storage": "SqliteDb(db_file=…): WAL; synchronous=NORMAL set per connection "
            "(agno's default FULL fsyncs every commit)",
            "fake model": "agno.models.base.Model subclass answering the fixed reply",
            "concurrency": "SqliteDb is synchronous: inside arun its queries block the event "
            "loop, so concurrent turns overlap only between queries (agno's AsyncSqliteDb, on "
            "aiosqlite, is the async alternative; not measured here)",
        }
        self._model = EchoModel()
        self._path: Path | None = None
        self._db: SqliteDb | None = None
        self._agent: Agent | None = None

    async def open(self, path: Path) -> None:
        self._path = path
        self._db = SqliteDb(db_file=str(path))

        @event.listens_for(self._db.db_engine, "connect")
        def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

        self._agent = Agent(
            name="bench",
            model=self._model,
            db=self._db,
            add_history_to_context=True,
            num_history_runs=HISTORY_RUNS,
            telemetry=False,
        )

    async def turn(self, user_id: str, session_id: str, text: str) -> str:
        assert self._agent is not None
        output = await self._agent.arun(
            text, user_id=user_id, session_id=scope_key(user_id, session_id)
        )
        return str(output.content)

    async def prefill(self, user_id: str, session_id: str, texts: Sequence[str]) -> None:
        assert self._db is not None
        assert self._path is not None
        key = scope_key(user_id, session_id)
        if await self.stored_turns(user_id, session_id) == 0:
            await self.turn(user_id, session_id, texts[0])
            texts = texts[1:]
        conn = connect(self._path)
        try:
            table = self._db.runs_table_name
            template_text, last_index = conn.execute(
                f"SELECT run_data, run_index FROM {table} WHERE session_id = ? "
                "ORDER BY run_index DESC LIMIT 1",
                (key,),
            ).fetchone()
            template = json.loads(template_text)
            rows = [
                _run_row(template, key, user_id, text, last_index + 1 + i)
                for i, text in enumerate(texts)
            ]
            if rows:
                columns = list(rows[0])
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})",
                    [tuple(row[c] for c in columns) for row in rows],
                )
                conn.execute("COMMIT")
        finally:
            conn.close()

    async def add_tenants(self, user_ids: Sequence[str], session_id: str) -> None:
        assert self._db is not None
        assert self._path is not None
        template, others = user_ids[0], user_ids[1:]
        await self.turn(template, session_id, "Hello")
        key = scope_key(template, session_id)
        conn = connect(self._path)
        try:
            (run_id,) = conn.execute(
                f"SELECT run_id FROM {self._db.runs_table_name} WHERE session_id = ?",
                (key,),
            ).fetchone()
            renames = [
                {run_id: str(uuid.uuid4()), template: user_id} for user_id in others
            ]  # the session id is "<user>:<session>", so renaming the user renames it too
            conn.execute("BEGIN IMMEDIATE")
            for table in (self._db.session_table_name, self._db.runs_table_name):
                clone_rows(conn, table, "session_id = ?", (key,), renames)
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def stored_turns(self, user_id: str, session_id: str) -> int:
        assert self._db is not None
        assert self._path is not None
        conn = connect(self._path)
        try:
            (count,) = conn.execute(
                f"SELECT count(*) FROM {self._db.runs_table_name} WHERE session_id = ?",
                (scope_key(user_id, session_id),),
            ).fetchone()
        except Exception as exc:
            if "no such table" in str(exc):
                return 0
            raise
        finally:
            conn.close()
        return int(count)

    def model_input(self) -> list[str]:
        return [str(m.content) for m in self._model.recorder.messages if m.content is not None]

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = self._agent = None


def _run_row(
    template: dict[str, Any], key: str, user_id: str, text: str, run_index: int
) -> dict[str, Any]:
    """Give the agno_runs row of one more turn, cloned from a real run's data."""
    run = json.loads(json.dumps(template))
    now = int(time.time())
    run["run_id"] = str(uuid.uuid4())
    run["created_at"] = now
    run["input"] = {**run.get("input", {}), "input_content": text}
    user, assistant = run["messages"][0], run["messages"][-1]
    user.update(id=str(uuid.uuid4()), content=text, created_at=now)
    assistant.update(id=str(uuid.uuid4()), content=REPLY, created_at=now)
    row = build_single_run_row(run, session_id=key, user_id=user_id, run_index=run_index)
    row["run_data"] = json_serializer(row["run_data"])
    return row


def adapter() -> AgnoPeer:
    return AgnoPeer()
