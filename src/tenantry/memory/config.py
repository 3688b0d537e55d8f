"""`MemoryConfig`: how an agent uses long-term memory (`Agent(memory=True | MemoryConfig(...))`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenantry._checks import check_int
from tenantry.errors import InvalidInput

if TYPE_CHECKING:
    from tenantry.models.base import Model
    from tenantry.models.embeddings import Embedder
    from tenantry.settings import Settings


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """What memory does for each turn of an agent. `Agent(memory=True)` is `MemoryConfig()`.

    Recall (always): before the model is called, the user's memories are searched with the new
    message and the best `recall_limit` that fit in `recall_chars` characters go into the
    system prompt, delimited as facts about the user.
    """

    recall_limit: int = 5
    """Most memories recalled into one turn's system prompt (0: no recall)."""
    recall_chars: int = 2000
    """Most characters of recalled memories in one system prompt."""
    learning: bool = True
    """After each acknowledged turn, ask the model (in the background) what to remember."""
    tools: bool = False
    """Offer the model the remember / recall / forget tools (scoped to the turn's user)."""
    summaries: bool = False
    """Keep a summary of each session's messages that fell out of the history window and send
    it to the model ahead of the window (updated in the background after each turn)."""
    embedder: Embedder | None = None
    """Rank memories semantically with this embedder; None: keyword search (works offline)."""
    model: Model | None = None
    """The model for extraction and summaries; None: the agent's own model."""
    candidates: int = 10
    """Most existing memories shown to the extraction task (the ones most relevant to the turn,
    then the most recently updated)."""
    summary_chars: int = 2000
    """Most characters the session summary is asked to keep."""
    max_pending: int = 10_000
    """Most background jobs waiting per event loop; a job beyond that is dropped and counted."""
    max_attempts: int = 3
    """Tries of one learning job whose update lost a compare-and-swap race (MemoryConflict)."""

    def __post_init__(self) -> None:
        check_int("recall_limit", self.recall_limit, minimum=0)
        check_int("recall_chars", self.recall_chars, minimum=0)
        check_int("candidates", self.candidates, minimum=0)
        check_int("summary_chars", self.summary_chars, minimum=100)
        check_int("max_pending", self.max_pending)
        check_int("max_attempts", self.max_attempts)
        for name in ("learning", "tools", "summaries"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"MemoryConfig.{name} must be True or False")


def memory_from_settings(settings: Settings) -> MemoryConfig | None:
    """Give the memory the settings ask for (TENANTRY_MEMORY, TENANTRY_MEMORY_TOOLS,
    TENANTRY_MEMORY_SUMMARIES), or None when all are off."""
    if not (settings.memory or settings.memory_summaries):
        return None
    return MemoryConfig(
        recall_limit=5 if settings.memory else 0,
        learning=settings.memory,
        tools=settings.memory and settings.memory_tools,
        summaries=settings.memory_summaries,
    )


def memory_config(value: bool | MemoryConfig | None) -> MemoryConfig | None:
    """Give the config `Agent(memory=...)` asks for: None (off) for False or None."""
    if value is None or value is False:
        return None
    if value is True:
        return MemoryConfig()
    if isinstance(value, MemoryConfig):
        return value
    raise InvalidInput(f"memory must be True, False or a MemoryConfig, got {type(value).__name__}")


__all__ = ["MemoryConfig", "memory_config", "memory_from_settings"]
