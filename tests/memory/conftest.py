"""What the memory tests share: a model that records what it is asked, can hold tenantry's
background tasks at a gate, and can answer extraction with a script."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tenantry import Message, OfflineModel
from tenantry.models.base import Model, ModelBase, ModelResponse
from tenantry.models.tasks import (
    EXTRACTION_TASK,
    SUMMARY_TASK,
    ExtractionRequest,
    Operation,
    operations_json,
    read_extraction,
)
from tenantry.types import ToolSpec

Script = Callable[[ExtractionRequest], str | list[Operation]]


def is_task(messages: Sequence[Message]) -> bool:
    """Tell whether `messages` are one of tenantry's background tasks, not a user's turn."""
    first = messages[0].content if messages and messages[0].role == "system" else ""
    return first.startswith((EXTRACTION_TASK, SUMMARY_TASK))


def system_of(messages: Sequence[Message]) -> str:
    return messages[0].content if messages and messages[0].role == "system" else ""


class Recording(ModelBase):
    """Delegates to `inner` (the offline model by default) and records every call: user
    turns in `chats`, background tasks in `tasks`. With `gate`, a task waits for it (and
    `task_started` is set first); with `script`, extraction is answered by the script."""

    name = "recording"

    def __init__(
        self,
        inner: Model | None = None,
        *,
        script: Script | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.inner = inner or OfflineModel()
        self.script = script
        self.gate = gate
        self.chats: list[list[Message]] = []
        self.tasks: list[list[Message]] = []
        self.task_started = asyncio.Event()

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        if not is_task(messages):
            self.chats.append(list(messages))
            return await self.inner.complete(messages, tools)
        self.tasks.append(list(messages))
        self.task_started.set()
        if self.gate is not None:
            await self.gate.wait()
        request = read_extraction(messages)
        if request is not None and self.script is not None:
            answer = self.script(request)
            content = answer if isinstance(answer, str) else operations_json(answer)
            return ModelResponse(content=content)
        return await self.inner.complete(messages, tools)
