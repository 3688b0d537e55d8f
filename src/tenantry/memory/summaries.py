"""Session summaries: what the messages that fell out of the history window said.

After a turn pushed messages out of the window, a background job asks the model to fold the
messages that left since the summary's `through_id` into the previous summary, and stores the
result with the id of the newest message it covers. The next turns send it ahead of the
window, so a long conversation does not silently forget its start.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tenantry.errors import InvalidModelAnswer
from tenantry.memory.config import MemoryConfig
from tenantry.models.base import Model
from tenantry.models.tasks import summary_messages
from tenantry.storage.base import Store
from tenantry.tenancy import Scope
from tenantry.types import Message, Summary

PAGE = 200
"""Most messages one job folds in: a session whose summary fell further behind (jobs dropped
while the queue was full) catches up from the newest PAGE messages before the window."""


def fallen_out(messages: Sequence[Message], window: int) -> list[Message]:
    """Give the messages, oldest first, that the model no longer sees: all but the newest
    `window`, and the leading non-user messages of those, which the agent leaves out too (a
    window may not open with a reply or a tool result)."""
    cut = max(0, len(messages) - window)
    while cut < len(messages) and messages[cut].role != "user":
        cut += 1
    return list(messages[:cut])


def since(messages: Sequence[Message], summary: Summary | None) -> list[Message]:
    """Give the messages after the one the summary goes through (all, without a summary or
    when that message is older than `messages`)."""
    if summary is not None:
        for index, message in enumerate(messages):
            if message.id == summary.through_id:
                return list(messages[index + 1 :])
    return list(messages)


@dataclass(frozen=True, slots=True)
class SummaryJob:
    """Bring one session's summary up to date; run it after the turn was stored."""

    store: Store
    model: Model
    config: MemoryConfig
    scope: Scope
    window: int

    async def __call__(self) -> None:
        user_id, session_id = self.scope.user_id, self.scope.session_id
        summary = await self.store.get_summary(user_id, session_id)
        recent = await self.store.get_messages(user_id, session_id, limit=PAGE + self.window)
        new = since(fallen_out(recent, self.window), summary)
        if not new:
            return
        previous = summary.text if summary is not None else None
        task = summary_messages(previous, new, limit=self.config.summary_chars)
        text = (await self.model.complete(task)).content.strip()
        if not text:
            raise InvalidModelAnswer("the model answered the summary task with nothing")
        updated = Summary(
            text=text[: self.config.summary_chars], through_id=new[-1].id, updated_at=time.time()
        )
        await self.store.set_summary(updated, user_id=user_id, session_id=session_id)


__all__ = ["PAGE", "SummaryJob", "fallen_out", "since"]
