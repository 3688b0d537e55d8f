"""A process that acknowledges a turn and then hangs in its learning job, to be killed there:
`python -m tests.support.memory_crash STORE_URL`.

It prints `acked <reply>` once `arun` returned (the turn is stored), then `learning` when the
background extraction has begun, and then waits for ever inside that extraction (the parent
kills it with SIGKILL at that point)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from tenantry import Agent, OfflineModel
from tenantry.models.base import ModelBase, ModelResponse
from tenantry.models.tasks import EXTRACTION_TASK
from tenantry.storage.url import open_store
from tenantry.types import Message, ToolSpec


class HangsWhileLearning(ModelBase):
    """The offline model, except that a memory extraction never finishes."""

    name = "hangs-while-learning"

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        if messages and messages[0].content.startswith(EXTRACTION_TASK):
            print("learning", flush=True)
            await asyncio.Event().wait()
        return await OfflineModel().complete(messages, tools)


async def main(url: str) -> None:
    async with open_store(url) as store:
        agent = Agent(model=HangsWhileLearning(), store=store, memory=True)
        output = await agent.arun("My name is Alice", user_id="alice", session_id="s1")
        print(f"acked {output.content}", flush=True)
        await agent.aflush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
