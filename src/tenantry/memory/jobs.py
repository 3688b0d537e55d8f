"""`BackgroundJobs`: the work an agent does after a turn was acknowledged (learning memories,
updating a session summary), serialised per user and parallel across users.

- Jobs of one user run one at a time, in the order they were submitted, so two sessions of
  the same user never learn at once in one process (across processes, the store's
  compare-and-swap keeps updates from being lost).
- Jobs of different users run in parallel: one task per user with pending work, created on
  submit and gone when that user's queue is empty. Nothing of a tenant is kept beyond its
  pending jobs.
- Bounded: at most `max_pending` jobs wait or run per event loop. A job submitted beyond that
  is dropped (counted as `dropped`, logged); the turn it came from is stored and answered
  as usual, its memory is simply not learned.
- A failing job is logged and counted (`failed`), never raised into a turn.
- `flush()` waits until the loop has no pending jobs. Jobs run on the event loop of the turn
  that submitted them (the loop that owns the store's connections); a loop that ends with
  jobs pending cancels them, and they count as `dropped`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenantry._checks import check_int

logger = logging.getLogger("tenantry.memory")

Job = Callable[[], Awaitable[None]]
EVENTS = ("queued", "done", "failed", "dropped")
"""What happens to a job: queued on submit; then done, failed or dropped."""


@dataclass
class JobCounts:
    """How many jobs of each kind were queued, done, failed and dropped, since start."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, kind: str, event: str, n: int = 1) -> None:
        key = (kind, event)
        self.counts[key] = self.counts.get(key, 0) + n

    def get(self, kind: str, event: str) -> int:
        return self.counts.get((kind, event), 0)


class _LoopJobs:
    """The pending jobs of one event loop, by user."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[tuple[str, Job]]] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.pending = 0
        self.idle = asyncio.Event()
        self.idle.set()


class BackgroundJobs:
    """Per-user serialised, bounded background jobs of one agent."""

    def __init__(self, max_pending: int = 10_000) -> None:
        self.max_pending = check_int("max_pending", max_pending)
        self.counts = JobCounts()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopJobs] = (
            weakref.WeakKeyDictionary()
        )
        self._guard = threading.Lock()

    def _here(self) -> _LoopJobs:
        loop = asyncio.get_running_loop()
        with self._guard:
            jobs = self._loops.get(loop)
            if jobs is None:
                jobs = self._loops[loop] = _LoopJobs()
            return jobs

    def submit(self, user_id: str, kind: str, job: Job) -> bool:
        """Queue `job` behind the user's pending jobs; give False if it was dropped because
        `max_pending` jobs are already pending. Call from the event loop the job runs on."""
        jobs = self._here()
        if jobs.pending >= self.max_pending:
            self.counts.add(kind, "dropped")
            logger.warning(
                "memory job queue full (%d pending): a %s job was dropped; its turn is "
                "stored, its memory not learned",
                jobs.pending,
                kind,
            )
            return False
        self.counts.add(kind, "queued")
        jobs.queues.setdefault(user_id, deque()).append((kind, job))
        jobs.pending += 1
        jobs.idle.clear()
        if user_id not in jobs.workers:
            jobs.workers[user_id] = asyncio.get_running_loop().create_task(
                self._drain(jobs, user_id), name="tenantry-memory-job"
            )
        return True

    async def _drain(self, jobs: _LoopJobs, user_id: str) -> None:
        queue = jobs.queues[user_id]
        try:
            while queue:
                kind, job = queue[0]
                try:
                    await job()
                except Exception as exc:
                    self.counts.add(kind, "failed")
                    logger.warning(
                        "a %s job failed (%s: %s); the turn is stored, nothing was learned",
                        kind,
                        type(exc).__name__,
                        exc,
                        exc_info=logger.isEnabledFor(logging.DEBUG),
                    )
                else:
                    self.counts.add(kind, "done")
                queue.popleft()
                self._finished(jobs, 1)
        except asyncio.CancelledError:
            for kind, _ in queue:
                self.counts.add(kind, "dropped")
            logger.warning(
                "%d memory job(s) cancelled before they finished (the event loop stopped; "
                "await agent.aflush() before it does)",
                len(queue),
            )
            self._finished(jobs, len(queue))
            queue.clear()
            raise
        finally:
            del jobs.queues[user_id]
            del jobs.workers[user_id]

    @staticmethod
    def _finished(jobs: _LoopJobs, n: int) -> None:
        jobs.pending -= n
        if jobs.pending == 0:
            jobs.idle.set()

    def pending(self) -> int:
        """Give the number of jobs waiting or running, on every event loop."""
        with self._guard:
            return sum(jobs.pending for jobs in self._loops.values())

    def users(self) -> int:
        """Give the number of users with jobs waiting or running, on every event loop (the
        only tenant data the machinery holds, and only while their jobs are pending)."""
        with self._guard:
            return sum(len(jobs.queues) for jobs in self._loops.values())

    async def flush(self) -> None:
        """Wait until this event loop has no pending jobs (bound it with `asyncio.timeout`;
        jobs left then keep running)."""
        await self._here().idle.wait()


__all__ = ["EVENTS", "BackgroundJobs", "Job", "JobCounts"]
