"""LangGraph: a one-node `StateGraph(MessagesState)` whose node awaits a LangChain chat model
(the fake) on the thread's messages, checkpointed by `AsyncSqliteSaver`, one thread per
conversation.

A turn is `await graph.ainvoke({"messages": [HumanMessage(text)]}, config)`: LangGraph loads
the thread's latest checkpoint, which holds the whole message list, and writes about three
new checkpoints per turn (input, node, end), each again with the whole list, plus the
pending writes. Pre-filled history goes through `graph.aupdate_state`: one checkpoint holding
all the messages, which is what the next turn reads; a thread grown by real turns would also
hold every earlier checkpoint, which the next turn does not read.
"""

from __future__ import annotations

import os

# LangChain's tracing is off unless these say otherwise; make sure nothing is sent anywhere.
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import ConfigDict, Field

from bench.peers import REPLY, Recorder, clone_rows, connect, scope_key, texts_of


class EchoChatModel(BaseChatModel):
    """LangChain's fake chat model: records its input and answers the fixed reply."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    recorder: Recorder = Field(default_factory=Recorder)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> ChatResult:
        self.recorder.messages = messages
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=REPLY))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> ChatResult:
        return self._generate(messages, stop)


class LangGraphPeer:
    """A one-node LangGraph graph on AsyncSqliteSaver."""

    name = "langgraph"

    def __init__(self) -> None:
        self.settings = {
            "agent": "StateGraph(MessagesState), one node: await model.ainvoke(messages); "
            "thread_id = f'{user}:{session}'",
            "storage": "AsyncSqliteSaver on one aiosqlite connection: WAL; synchronous=NORMAL "
            "(SQLite's default FULL fsyncs every commit)",
            "fake model": "langchain_core BaseChatModel subclass answering the fixed reply",
            "concurrency": "AsyncSqliteSaver runs its queries on aiosqlite's thread, one at a "
            "time under the saver's asyncio.Lock",
        }
        self._model = EchoChatModel()
        self._path: Path | None = None
        self._conn: aiosqlite.Connection | None = None
        self._graph: Any = None

    async def _call_model(self, state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await self._model.ainvoke(state["messages"])]}

    async def open(self, path: Path) -> None:
        self._path = path
        self._conn = await aiosqlite.connect(path)
        await self._conn.execute("PRAGMA synchronous = NORMAL")
        saver = AsyncSqliteSaver(self._conn)
        await saver.setup()
        builder = StateGraph(MessagesState)
        builder.add_node("model", self._call_model)
        builder.add_edge(START, "model")
        builder.add_edge("model", END)
        self._graph = builder.compile(checkpointer=saver)

    @staticmethod
    def _config(user_id: str, session_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": scope_key(user_id, session_id)}}

    async def turn(self, user_id: str, session_id: str, text: str) -> str:
        state = await self._graph.ainvoke(
            {"messages": [HumanMessage(content=text)]}, self._config(user_id, session_id)
        )
        return str(state["messages"][-1].content)

    async def prefill(self, user_id: str, session_id: str, texts: Sequence[str]) -> None:
        messages: list[BaseMessage] = []
        for text in texts:
            messages += [HumanMessage(content=text), AIMessage(content=REPLY)]
        await self._graph.aupdate_state(
            self._config(user_id, session_id), {"messages": messages}, as_node="model"
        )

    async def add_tenants(self, user_ids: Sequence[str], session_id: str) -> None:
        assert self._path is not None
        template, others = user_ids[0], user_ids[1:]
        await self.turn(template, session_id, "Hello")
        key = scope_key(template, session_id)
        renames = [{template: user_id} for user_id in others]
        conn = connect(self._path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for table in ("checkpoints", "writes"):
                clone_rows(conn, table, "thread_id = ?", (key,), renames)
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def stored_turns(self, user_id: str, session_id: str) -> int:
        state = await self._graph.aget_state(self._config(user_id, session_id))
        return len(state.values.get("messages", [])) // 2

    def model_input(self) -> list[str]:
        return texts_of(self._model.recorder.messages, lambda message: message.content)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = self._graph = None


def adapter() -> LangGraphPeer:
    return LangGraphPeer()
