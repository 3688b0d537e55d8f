"""`AgentMemory`: what an agent with memory on holds (its config and its background jobs) and
the two calls its turn makes: `begin` before the model is called, `after_turn` once the turn
was stored. It keeps no tenant data beyond the jobs pending for each user."""

from __future__ import annotations

from collections.abc import Sequence

from tenantry.memory.config import MemoryConfig
from tenantry.memory.jobs import BackgroundJobs
from tenantry.memory.learning import LearningJob
from tenantry.memory.recall import recall
from tenantry.memory.summaries import SummaryJob
from tenantry.memory.turn import TurnMemory
from tenantry.models.base import Model
from tenantry.storage.base import Store
from tenantry.tenancy import Scope
from tenantry.types import Message

LEARN, SUMMARY = "learn", "summary"
"""The kinds of background job (the `kind` label of their metrics)."""


class AgentMemory:
    """One agent's memory machinery. Shared by every tenant the agent serves."""

    __slots__ = ("config", "history_window", "jobs")

    def __init__(self, config: MemoryConfig, history_window: int) -> None:
        self.config = config
        self.history_window = history_window
        self.jobs = BackgroundJobs(config.max_pending)

    async def begin(
        self, store: Store, scope: Scope, run_id: str, text: str, window: Sequence[Message]
    ) -> TurnMemory:
        """Give the turn's memory: the user's memories recalled for `text` and, when the
        history `window` the turn read is full (older messages may have fallen out), the
        session summary."""
        full = len(window) >= self.history_window
        recalled = await recall(store, self.config, scope.user_id, text)
        summary = None
        if self.config.summaries and full:
            summary = await store.get_summary(scope.user_id, scope.session_id)
        return TurnMemory(store, self.config, scope, run_id, len(window), recalled, summary)

    def after_turn(self, turn_memory: TurnMemory, model: Model, turn: Sequence[Message]) -> None:
        """Queue what the stored `turn` asks for: learning from it, and a summary update when
        its messages pushed older ones out of the window. Returns at once; the jobs run in
        the background, serialised per user."""
        config, scope, store = self.config, turn_memory.scope, turn_memory.store
        model = config.model or model
        if config.learning:
            job = LearningJob(store, model, config, scope, turn_memory.run_id, tuple(turn))
            self.jobs.submit(scope.user_id, LEARN, job)
        if config.summaries and turn_memory.window + len(turn) > self.history_window:
            summary = SummaryJob(store, model, config, scope, self.history_window)
            self.jobs.submit(scope.user_id, SUMMARY, summary)


__all__ = ["LEARN", "SUMMARY", "AgentMemory"]
