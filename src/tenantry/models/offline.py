"""`OfflineModel`: deterministic, no network; the default when no API key is set.

It knows one trick, enough to make the Alice/Bob demo true from what it is given: it
remembers names (and where the user lives). After "My name is Alice", "What's my name?" is
answered "Your name is Alice." The name comes from the conversation's history, else from the
facts about the user recalled into the system prompt (long-term memory) or the session
summary there. Anything else gets a short reply saying it is the offline model. Because it
reads only the messages it is handed, it shows exactly what the agent's isolation gives it.

It also answers tenantry's own tasks (`tenantry.models.tasks`): memory extraction and session
summaries, deterministically (`tenantry.models.offline_facts`), so memory works offline too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from tenantry.models.base import ModelBase, ModelResponse, StreamItem, estimated_usage
from tenantry.models.offline_facts import (
    extraction_answer,
    home_in,
    name_in,
    summary_answer,
    value_in,
)
from tenantry.models.tasks import (
    facts_in,
    operations_json,
    read_extraction,
    read_summary_request,
    summary_in,
)
from tenantry.types import Message, ToolSpec

_NAME_QUESTIONS = (
    re.compile(r"(?i)\bwhat(?:'|’)?s\s+my\s+name\b|\bwhat\s+is\s+my\s+name\b|\bwho\s+am\s+i\b"),
    re.compile(r"(?i)\bdo\s+you\s+(?:know|remember)\s+my\s+name\b"),
    re.compile(r"私の名前は(?:何|なん)"),
)
_HOME_QUESTION = re.compile(r"(?i)\bwhere\s+do\s+i\s+live\b|\bwhere\s+am\s+i\s+living\b")
_MAX_ECHO = 80


def _asks_name(text: str) -> bool:
    return any(pattern.search(text) for pattern in _NAME_QUESTIONS)


def _remembered(kind: str, messages: Sequence[Message]) -> str | None:
    """Give the value of `kind` known from the system prompt: the recalled facts, else the
    session summary."""
    summary = summary_in(messages)
    return value_in(kind, facts_in(messages)) or (value_in(kind, [summary]) if summary else None)


def _task_answer(messages: Sequence[Message]) -> str | None:
    extraction = read_extraction(messages)
    if extraction is not None:
        return operations_json(extraction_answer(extraction))
    summary = read_summary_request(messages)
    if summary is not None:
        return summary_answer(summary)
    return None


def reply_to(messages: Sequence[Message]) -> str:
    """Give the offline model's reply to a conversation (pure function of the messages)."""
    task = _task_answer(messages)
    if task is not None:
        return task
    users = [m.content for m in messages if m.role == "user"]
    if not users:
        return "Hello! This is tenantry's offline model. Say something to begin."
    current, earlier = users[-1], users[:-1]
    if _asks_name(current):
        name = next(filter(None, map(name_in, reversed(earlier))), None)
        name = name or _remembered("name", messages)
        if name:
            return f"Your name is {name}."
        return 'I don\'t know your name yet. Tell me with "My name is ...".'
    if _HOME_QUESTION.search(current):
        home = next(filter(None, map(home_in, reversed(earlier))), None)
        home = home or _remembered("home", messages)
        if home:
            return f"You live in {home}."
        return 'I don\'t know where you live yet. Tell me with "I live in ...".'
    name = name_in(current)
    if name:
        return f"Nice to meet you, {name}! I'll remember your name."
    home = home_in(current)
    if home:
        return f"Noted: you live in {home}."
    echo = " ".join(current.split())
    if len(echo) > _MAX_ECHO:
        echo = echo[: _MAX_ECHO - 1] + "…"
    return (
        "This is tenantry's offline model (no API key is set), so I can only remember names. "
        f'You said: "{echo}"'
    )


class OfflineModel(ModelBase):
    """A deterministic stand-in for an LLM that remembers names from the history it is given."""

    name = "offline"

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        content = reply_to(messages)  # its usage: an estimate (characters / 4), so marked
        return ModelResponse(content=content, usage=estimated_usage(messages, content))

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        response = await self.complete(messages, tools)
        for delta in re.findall(r"\S+\s*", response.content):
            yield delta
        yield response
