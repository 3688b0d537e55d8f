"""`AgentMemory`: what an agent with memory on holds (its config and its background jobs) and
the two calls its turn makes: `begin` before the model is called, `after_turn` once the turn
was stored. It keeps no tenant data beyond the jobs pending for each user."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tenantry.memory.config import MemoryConfig
from tenantry.memory.jobs import BackgroundJobs
from tenantry.memory.learning import LearningJob
from tenantry.memory.recall import MAX_QUERY_CHARS, recall, within
from tenantry.memory.summaries import SummaryJob
from tenantry.memory.turn import TurnMemory
from tenantry.models.base import Model
from tenantry.storage.base import Snapshot, Store
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
        self, store: Store, scope: Scope, run_id: str, text: str
    ) -> tuple[Snapshot, TurnMemory]:
        """Give the turn's history window and session state (as `store.snapshot`) and its
        memory: the user's memories recalled for `text`, read at the same time, and, when the
        window is full (older messages may have fallen out), the session summary."""
        user_id, session_id = scope.user_id, scope.session_id
        config, window = self.config, self.history_window
        if config.embedder is None:  # keyword recall: one read with the history
            wanted = config.recall_limit if config.recall_chars and text.strip() else 0
            snapshot, found = await store.snapshot_and_search(
                text[:MAX_QUERY_CHARS],
                user_id=user_id,
                session_id=session_id,
                limit=window,
                search_limit=wanted,
            )
            recalled = within(found, config.recall_limit, config.recall_chars)
        else:  # the query's vector first: the embedder's call overlaps the history read
            recalling = asyncio.ensure_future(recall(store, config, user_id, text))
            try:
                snapshot = await store.snapshot(user_id, session_id, limit=window)
            except BaseException:
                recalling.cancel()
                raise
            recalled = await recalling
        summary = None
        if self.config.summaries and len(snapshot.messages) >= self.history_window:
            summary = await store.get_summary(user_id, session_id)
        window = len(snapshot.messages)
        return snapshot, TurnMemory(store, self.config, scope, run_id, window, recalled, summary)

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
