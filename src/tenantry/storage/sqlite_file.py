"""The threads, connections and transactions of `SQLiteStore`'s file (`SQLiteFile`, a base
of the store).

Each store operation is one function that runs as one transaction: writes on a single writer
thread (SQLite allows one writer at a time anyway), committed together when they queue up
(`groupcommit`), reads on a small pool of reader threads with their own connections (WAL lets
them read while the writer writes). Small bounded reads (a turn's history window, one scope's
row) run on the event loop's own thread instead, on a connection of that thread: a WAL read
never waits for the writer, and such a read costs less than the two thread switches of a hop
to a reader thread. That connection never waits for a lock (busy_timeout 0): a read it cannot
start at once (a file being switched to WAL, another process holding it exclusively) goes to
the reader threads, which wait up to the busy timeout. A turn's write, when SQLite's write
lock is free, commits on the event loop's thread too, after waiting for the writer thread if
it is busy (`loopwrite`; only with synchronous NORMAL or OFF, where a COMMIT does not wait
for the disk). SQLite's errors become the store's (`_run`).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal, TypeVar

from tenantry.errors import InvalidInput, StoreClosed, StoreError, StoreUnavailable
from tenantry.storage.base import Store
from tenantry.storage.groupcommit import GroupCommit
from tenantry.storage.loopwrite import LoopWrites, is_busy
from tenantry.storage.sqlite_sql import install_schema

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class SQLiteFile(Store):
    """A SQLite file's threads and connections, and the transactions run on them: `_write`,
    `_write_small`, `_query`, `_query_small` (the store's primitives are built on these)."""

    def _open_file(
        self, path: str, *, readers: int, synchronous: Synchronous, busy_timeout: float
    ) -> None:
        """Set up the threads and connections of the file at `path` (opened on first use)."""
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidInput(f"synchronous must be OFF, NORMAL, FULL or EXTRA: {synchronous!r}")
        if readers < 1:
            raise InvalidInput(f"readers must be at least 1, got {readers}")
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._in_memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tenantry-sqlite-writer")
        self._readers = (
            self._writer
            if self._in_memory
            else ThreadPoolExecutor(readers, thread_name_prefix="tenantry-sqlite-reader")
        )
        self._write_conn: sqlite3.Connection | None = None
        self._read_pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._conns: list[sqlite3.Connection] = []  # every connection but the writer's, to close
        self._loop_conns = threading.local()  # the connection of each event loop's thread
        self._init_lock = threading.Lock()
        self._init: Future[None] | None = None
        self._ready = False
        self._group = GroupCommit(self._writer, self._connection)
        self._loop_writes = (
            None
            if self._in_memory or synchronous not in ("OFF", "NORMAL")
            else LoopWrites(self._group, self._loop_connection, lambda: self._closed)
        )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _open(self) -> None:
        """Runs on the writer thread, once: connect, switch to WAL, create or upgrade the
        schema."""
        conn = self._connect()
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.005
        while True:
            try:
                if not self._in_memory:
                    conn.execute("PRAGMA journal_mode = WAL")
                install_schema(conn, self.path)
                break
            except sqlite3.OperationalError as exc:
                # When waiting could deadlock (two processes switching a new file to WAL at
                # once, or another connection writing to it meanwhile), SQLite answers
                # "database is locked" at once instead of waiting for the busy timeout; so
                # wait here, up to the same timeout. Both steps can be repeated.
                if not is_busy(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
            except BaseException:
                conn.close()
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.1)
        self._write_conn = conn

    async def _ensure_open(self) -> None:
        if self._ready:
            return
        with self._init_lock:
            if self._init is None:
                self._init = self._writer.submit(self._open)
            init = self._init
        try:
            await asyncio.wrap_future(init)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        self._ready = True

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Give what `call()` (which runs a function on one of our threads) gives, opening
        the database first and turning SQLite's errors into the store's."""
        await self._ensure_open()
        self._check_open()
        try:
            return await call()
        except RuntimeError as exc:  # the executor was shut down under us
            if self._closed:
                raise StoreClosed(f"{type(self).__name__} is closed; open a new store") from exc
            raise
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise StoreUnavailable(
                    f"SQLite database {self.path!r} stayed locked by another process for more "
                    f"than the busy timeout; retry later"
                ) from exc
            raise StoreError(f"SQLite error on {self.path!r}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite error on {self.path!r}: {exc}") from exc

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in an IMMEDIATE transaction on the writer thread, atomically, committed
        with the writes queued meanwhile (group commit); give its result once committed."""
        return await self._run(lambda: self._group.run(fn))

    async def _write_small(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`_write` for a turn-sized write: on the event loop's thread when it can start at
        once and its COMMIT does not wait for the disk (`loopwrite`), else as `_write`."""
        writes = self._loop_writes
        if writes is None:
            return await self._write(fn)
        return await self._run(lambda: writes.run(fn))

    def _loop_connection(self) -> sqlite3.Connection:
        """The connection of the calling thread's event loop: its small reads and, with loop
        writes, its turns' writes. It never waits for a lock (busy_timeout 0) and never
        checkpoints (`loopwrite`). One connection for both: SQLite empties a connection's page
        cache whenever another connection committed, so reads on the connection that did the
        writes find their pages cached."""
        conn: sqlite3.Connection | None = getattr(self._loop_conns, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA busy_timeout = 0")
            if self._loop_writes is None:
                conn.execute("PRAGMA query_only = ON")
            else:
                conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer thread checkpoints
            with self._init_lock:
                self._conns.append(conn)
            self._loop_conns.conn = conn
        return conn

    def _connection(self) -> sqlite3.Connection:
        assert self._write_conn is not None  # _ensure_open ran first
        return self._write_conn

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` as one read transaction (one consistent snapshot) on a reader thread."""
        if self._in_memory:
            return await self._write(fn)
        loop = asyncio.get_running_loop()
        return await self._run(lambda: loop.run_in_executor(self._readers, self._snapshot_of, fn))

    async def _query_small(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`_query` for a small bounded read: on the event loop's thread when it can start at
        once (see the module docstring), else on a reader thread."""
        if self._in_memory:
            return await self._write(fn)
        return await self._run(lambda: self._read_here(fn))

    async def _read_here(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._loop_connection()
        try:
            return _in_read_transaction(conn, fn)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._snapshot_of, fn)

    def _reader_connection(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        with self._init_lock:
            self._conns.append(conn)
        return conn

    def _snapshot_of(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._read_pool.get_nowait()
        except queue.Empty:
            conn = self._reader_connection()
        try:
            return _in_read_transaction(conn, fn)
        finally:
            self._read_pool.put(conn)

    async def _close(self) -> None:
        def shutdown() -> None:
            self._writer.shutdown(wait=True)
            if self._readers is not self._writer:
                self._readers.shutdown(wait=True)
            for conn in [*self._conns, self._write_conn]:
                if conn is not None:
                    conn.close()

        await asyncio.to_thread(shutdown)


def _in_read_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Give `fn(conn)`, run as one read transaction (one consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")


__all__ = ["SQLiteFile", "Synchronous"]
