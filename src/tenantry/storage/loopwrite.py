"""`LoopWrites`: a turn-sized SQLite write committed on the event loop's own thread.

A write through `GroupCommit` costs two thread hops (loop to writer thread and back), and
while the writer thread runs Python the loop waits for the GIL: under load that contention,
not SQLite, is most of a turn's time. With `synchronous=NORMAL` (or OFF) in WAL mode a COMMIT
appends to the WAL without waiting for the disk, so a small write costs tens of microseconds
and can run where its caller runs. Here it does when it can start at once:

- the writer thread has nothing queued (so it is not holding SQLite's write lock and loop
  writes do not overtake a queue of writes that is waiting anyway), and
- `BEGIN IMMEDIATE` gets the write lock without waiting (busy_timeout 0 on the loop's
  connection; when another process or connection holds it, the write goes to the writer
  thread, which waits up to the busy timeout, exactly as before).

Durability is the same as through the writer thread: the caller hears of its write only after
its COMMIT returned. The loop's connection never checkpoints (a checkpoint waits for the
disk): after every `CHECKPOINT_EVERY` loop commits the writer thread checkpoints while the
loop's writes wait for it, so the next write starts the WAL over, as SQLite's automatic
checkpoint in the committing connection would (a checkpoint running beside a stream of loop
commits would never catch up with them, and the WAL would only grow).

A write that finds the writer thread busy (a checkpoint, another caller's write) waits for
it to finish and then commits on the loop, rather than joining the writer's queue: once
writes join it, those arriving meanwhile join too, under load it never falls idle again, and
its Python contends with the loop's for the GIL (measured: 5 % of writes on the loop, 1,600
turns/s; waiting instead, 85 %, 2,350 turns/s).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from tenantry.storage.groupcommit import GroupCommit

T = TypeVar("T")


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused for a lock held elsewhere ("database is locked" / "busy")."""
    return "locked" in str(exc) or "busy" in str(exc)


CHECKPOINT_EVERY = 1000
"""Loop commits between two checkpoints. SQLite's own default is every ~1,000 WAL pages (a
turn writes a handful); each checkpoint stalls the writes for its fsync (about 10 ms here),
so 1,000 turns, a WAL of about 30 MB at most, gave 13 % more turns/s under load than 200
(6.6 MB)."""


def _nothing(conn: sqlite3.Connection) -> None:
    """The writer thread's job that only carries its checkpoint."""


class LoopWrites:
    """Runs write functions on the calling thread's own connection (`connection()` gives it)
    when SQLite lets them start at once, else through `group`."""

    def __init__(
        self,
        group: GroupCommit,
        connection: Callable[[], sqlite3.Connection],
        closed: Callable[[], bool],
    ) -> None:
        self._group = group
        self._connection = connection
        self._closed = closed  # whether the store's close began (it closes `connection()`)
        self._commits = 0  # loop commits since the last checkpoint (a hint: not locked)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Give `work(conn)`'s result once the transaction that ran it has committed."""
        if not self._group.idle:
            # Wait for the writer thread's group rather than join it: once a write joins the
            # writer thread, those arriving meanwhile join it too, and under load it never
            # falls idle again; its Python then contends with the loop's for the GIL. Only
            # once: when it is busy again at once, queue behind it.
            await self._group.wait_idle()
            if not self._free():
                return await self._group.run(work)
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._group.checkpoint_first()
            await self._group.run(_nothing)  # the checkpoint, and the writes waiting for it
            await self._group.wait_idle()  # its drain may not have ended when it answered
            if not self._free():
                return await self._group.run(work)
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            return await self._group.run(work)  # held elsewhere: wait on the writer thread
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # report the error that led here
                    conn.execute("ROLLBACK")
            raise
        self._commits += 1
        return result

    def _free(self) -> bool:
        """Whether, after a wait, the loop may still write: the writer thread idle (nothing
        to overtake) and the store not closing (its close closes the loop's connection)."""
        return self._group.idle and not self._closed()


__all__ = ["CHECKPOINT_EVERY", "LoopWrites", "is_busy"]
