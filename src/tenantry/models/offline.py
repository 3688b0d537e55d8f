"""`OfflineModel`: deterministic, no network; the default when no API key is set.

It knows one trick, enough to make the Alice/Bob demo true from the history it is given: it
remembers names. After "My name is Alice", "What's my name?" is answered "Your name is Alice."
Anything else gets a short reply saying it is the offline model. Because it reads only the
messages it is handed, it shows exactly what the agent's history isolation gives it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from tenantry.models.base import ModelBase, ModelResponse, StreamItem
from tenantry.types import Message, ToolSpec, Usage

_CHAR = r"[^\s.,!?;:\"'。、！？]"
_NAME_STATEMENTS = (
    # "my name is Alice", "My name is Alice Smith." (later words only when capitalised)
    re.compile(rf"(?i:\bmy\s+name\s+is|\bcall\s+me)\s+(?P<name>{_CHAR}+(?:\s+[A-Z]{_CHAR}*)*)"),
    re.compile(
        r"(?:私の名前は|僕の名前は|わたしの名前は)\s*(?P<name>[^\s。、！？!?.]+?)(?:です|だ|。|！|$)"
    ),
)
_NAME_QUESTIONS = (
    re.compile(r"(?i)\bwhat(?:'|’)?s\s+my\s+name\b|\bwhat\s+is\s+my\s+name\b|\bwho\s+am\s+i\b"),
    re.compile(r"(?i)\bdo\s+you\s+(?:know|remember)\s+my\s+name\b"),
    re.compile(r"私の名前は(?:何|なん)"),
)
_MAX_ECHO = 80


def _name_in(text: str) -> str | None:
    for pattern in _NAME_STATEMENTS:
        found = None
        for match in pattern.finditer(text):
            found = match.group("name")
        if found:
            return found
    return None


def _asks_name(text: str) -> bool:
    return any(pattern.search(text) for pattern in _NAME_QUESTIONS)


def reply_to(messages: Sequence[Message]) -> str:
    """Give the offline model's reply to a conversation (pure function of the messages)."""
    users = [m.content for m in messages if m.role == "user"]
    if not users:
        return "Hello! This is tenantry's offline model. Say something to begin."
    current = users[-1]
    if _asks_name(current):
        for text in reversed(users[:-1]):
            name = _name_in(text)
            if name:
                return f"Your name is {name}."
        return 'I don\'t know your name yet. Tell me with "My name is ...".'
    name = _name_in(current)
    if name:
        return f"Nice to meet you, {name}! I'll remember your name."
    echo = " ".join(current.split())
    if len(echo) > _MAX_ECHO:
        echo = echo[: _MAX_ECHO - 1] + "…"
    return (
        "This is tenantry's offline model (no API key is set), so I can only remember names. "
        f'You said: "{echo}"'
    )


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class OfflineModel(ModelBase):
    """A deterministic stand-in for an LLM that remembers names from the history it is given."""

    name = "offline"

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> ModelResponse:
        content = reply_to(messages)
        usage = Usage(
            requests=1,
            input_tokens=sum(_tokens(m.content) for m in messages),
            output_tokens=_tokens(content),
        )
        return ModelResponse(content=content, usage=usage)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[StreamItem]:
        response = await self.complete(messages, tools)
        for delta in re.findall(r"\S+\s*", response.content):
            yield delta
        yield response
