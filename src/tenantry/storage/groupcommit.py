"""`GroupCommit`: SQLite's single writer commits the writes queued meanwhile together.

Every SQLite write is one function run on the writer thread in an IMMEDIATE transaction. Run
one at a time, each costs a COMMIT (a WAL append, an fsync with synchronous=FULL) and two
thread hops. Here callers queue their functions; the writer thread takes up to `max_group`
of them, runs each under its own SAVEPOINT inside one transaction, so a function that fails
rolls back alone and the others keep their work, then COMMITs once and wakes the callers
(one `call_soon_threadsafe` per event loop). A function queued alone runs in a transaction
of its own, without a savepoint.

Durability is unchanged: a caller hears of its write only after the COMMIT that holds it.
If that COMMIT fails, or SQLite rolls the whole transaction back (disk full, I/O error),
every function of the group fails with that error and nothing of the group is stored.
A caller cancelled before the writer took its function is skipped, as an executor would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]
Outcome = tuple[Any, BaseException | None]
"""A function's result and None, or None and the exception it raised."""

MAX_GROUP = 256
"""Most functions committed by one transaction."""


@dataclass(frozen=True, slots=True)
class _Job:
    work: Work
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[Any]


class GroupCommit:
    """Runs write functions on the `writer` executor's thread (which must have exactly one),
    on the connection `connection()` gives, committing those queued together as a group."""

    def __init__(
        self,
        writer: ThreadPoolExecutor,
        connection: Callable[[], sqlite3.Connection],
        *,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._writer = writer
        self._connection = connection
        self._max_group = max_group
        self._jobs: deque[_Job] = deque()
        self._guard = threading.Lock()
        self._draining = False  # a _drain is queued or running on the writer thread
        self._checkpoint_due = False
        self._idle_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def idle(self) -> bool:
        """Nothing queued or being committed (a hint: it can change at once)."""
        return not self._draining

    def checkpoint_first(self) -> None:
        """Have the writer thread checkpoint the WAL (passively) before the next group it
        commits: with no write between the two, that group's transaction starts the WAL over
        instead of growing it (see `loopwrite`)."""
        self._checkpoint_due = True

    async def wait_idle(self) -> None:
        """Return once the writer thread has committed everything queued (at once when
        nothing is)."""
        loop = asyncio.get_running_loop()
        with self._guard:
            if not self._draining:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._idle_waiters.append((loop, waiter))
        await waiter

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Give `work(conn)`'s result once the transaction that ran it has committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Job(work, loop, done))
        return await done

    def _enqueue(self, job: _Job) -> None:
        with self._guard:
            self._jobs.append(job)
            if self._draining:
                return
            self._draining = True
        try:
            self._writer.submit(self._drain)
        except RuntimeError as exc:  # the executor was shut down: nobody will drain the queue
            with self._guard:
                stranded = list(self._jobs)
                self._jobs.clear()
                self._draining = False
                waiters, self._idle_waiters = self._idle_waiters, []
            _settle(stranded, [(None, exc)] * len(stranded))
            _wake(waiters)

    def _drain(self) -> None:
        """On the writer thread: commit queued functions, a group at a time, until none is
        left."""
        while True:
            with self._guard:
                taken = min(len(self._jobs), self._max_group)
                if not taken:
                    self._draining = False
                    waiters, self._idle_waiters = self._idle_waiters, []
                    break
                group = [self._jobs.popleft() for _ in range(taken)]
            group = [job for job in group if not job.done.cancelled()]
            if not group:
                continue
            try:
                outcomes = self._commit(group)
            except BaseException as exc:  # a bug: still answer every caller
                outcomes = [(None, exc)] * len(group)
            _settle(group, outcomes)
        _wake(waiters)

    def _commit(self, group: list[_Job]) -> list[Outcome]:
        conn = self._connection()
        if self._checkpoint_due:
            self._checkpoint_due = False
            with contextlib.suppress(sqlite3.Error):  # busy: the WAL grows a little longer
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        if len(group) == 1:
            return [_alone(conn, group[0].work)]
        try:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = [_in_savepoint(conn, job.work) for job in group]
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            return [(None, exc)] * len(group)
        return outcomes


def _alone(conn: sqlite3.Connection, work: Work) -> Outcome:
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
    except BaseException as exc:
        return None, exc
    return result, None


def _in_savepoint(conn: sqlite3.Connection, work: Work) -> Outcome:
    conn.execute("SAVEPOINT job")
    try:
        result = work(conn)
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite rolled the whole transaction back: the group fails
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return None, exc
    conn.execute("RELEASE job")
    return result, None


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the error that led here is the one to report
            conn.execute("ROLLBACK")


def _settle(jobs: list[_Job], outcomes: list[Outcome]) -> None:
    """Hand each job its outcome on its own event loop: one wake-up per loop."""
    _hand_out([(job.loop, job.done, outcome) for job, outcome in zip(jobs, outcomes, strict=True)])


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    """Resolve `wait_idle`'s futures, each on its own event loop."""
    _hand_out([(loop, waiter, (None, None)) for loop, waiter in waiters])


def _hand_out(
    futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Outcome]],
) -> None:
    """Resolve each future with its outcome on its own event loop: one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for loop, future, outcome in futures:
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there any more
            loop.call_soon_threadsafe(_resolve, settled)


def _resolve(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for done, (result, error) in settled:
        if done.done():  # its caller was cancelled meanwhile
            continue
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)


__all__ = ["MAX_GROUP", "GroupCommit"]
