"""`SQLiteMemories`: the memories of `SQLiteStore`, in two tables of its file.

- `memories`: one row per memory, unique by (user_id, id), with `stamp`, the user's count of
  memory writes at its last write (indexed by (user_id, stamp): listing, the cap and the
  order of ties), and its vector as float32 bytes.
- `memory_terms`: an FTS5 index whose row i holds the tokens of memory row i, each prefixed
  by its user's key (`search.user_terms`), with the `ascii` tokenizer, which keeps our tokens
  whole (they hold ASCII letters and digits or non-ASCII characters only). So a query's
  posting lists hold that user's memories only, and its cost does not grow with other
  users' memories; FTS5's bm25() ranks them. The join on `memories` still filters by user,
  so two users whose keys collided could not see each other's memories.

Every write is one function on the writer thread, in one transaction (see `sqlite`): the
insert, its index row and the cap are atomic, and writes of one file are serialised, so a
compare-and-swap needs no more than reading the version in the same transaction.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tenantry.storage.base import Store
from tenantry.storage.codec import encode_vector
from tenantry.storage.memories import conflict, not_found
from tenantry.storage.search import tokens, user_terms
from tenantry.types import Memory

T = TypeVar("T")

FIELDS = "id, user_id, text, created_at, updated_at, version, session_id, run_id"
"""A memory's columns, in the order of `Memory`'s fields."""
_SEARCH_COLUMNS = ", ".join(f"m.{name.strip()}" for name in FIELDS.split(","))
NEXT_STAMP = "(SELECT coalesce(max(stamp), 0) + 1 FROM memories WHERE user_id = ?)"


def _memory(row: Any) -> Memory:
    return Memory(*row)


def _row(m: Memory) -> tuple[Any, ...]:
    """Give a memory's FIELDS."""
    return (m.id, m.user_id, m.text, m.created_at, m.updated_at, m.version, m.session_id, m.run_id)


def _terms(user_id: str, text: str) -> str:
    return " ".join(user_terms(user_id, tokens(text)))


def _match(user_id: str, terms: Sequence[str]) -> str:
    """Give the FTS5 query for any of the user's `terms`: quoted, which is safe because a
    term holds letters and digits only."""
    return " OR ".join(f'"{term}"' for term in user_terms(user_id, terms))


def delete_user_memories(conn: sqlite3.Connection, user_id: str) -> int:
    """Delete every memory of the user and its index row; give how many."""
    conn.execute(
        "DELETE FROM memory_terms WHERE rowid IN (SELECT seq FROM memories WHERE user_id = ?)",
        (user_id,),
    )
    return conn.execute("DELETE FROM memories WHERE user_id = ?", (user_id,)).rowcount


def delete_all_memories(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM memory_terms")
    conn.execute("DELETE FROM memories")


def _forget(conn: sqlite3.Connection, seqs: Sequence[int]) -> None:
    marks = ",".join("?" * len(seqs))
    conn.execute(f"DELETE FROM memory_terms WHERE rowid IN ({marks})", seqs)
    conn.execute(f"DELETE FROM memories WHERE seq IN ({marks})", seqs)


class SQLiteMemories(Store):
    """The memory primitives of `SQLiteStore`, on its transactions (`_write`, `_query`)."""

    @abstractmethod
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    @abstractmethod
    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def _add_memory(self, memory: Memory, vector: Sequence[float] | None) -> None:
        blob = None if vector is None else encode_vector(vector)
        terms = _terms(memory.user_id, memory.text)
        cap = self._max_memories
        m = memory

        def add(conn: sqlite3.Connection) -> None:
            (seq,) = conn.execute(
                f"INSERT INTO memories (stamp, embedding, {FIELDS}) "
                f"VALUES ({NEXT_STAMP}, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                (m.user_id, blob, *_row(m)),
            ).fetchone()
            conn.execute("INSERT INTO memory_terms (rowid, terms) VALUES (?, ?)", (seq, terms))
            if cap is not None:
                beyond = conn.execute(
                    "SELECT seq FROM memories WHERE user_id = ? "
                    "ORDER BY stamp DESC LIMIT -1 OFFSET ?",
                    (m.user_id, cap),
                ).fetchall()
                if beyond:
                    _forget(conn, [row[0] for row in beyond])

        await self._write(add)

    async def _memories_by_id(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        marks = ",".join("?" * len(memory_ids))

        def read(conn: sqlite3.Connection) -> list[Memory]:
            rows = conn.execute(
                f"SELECT {FIELDS} FROM memories WHERE user_id = ? AND id IN ({marks})",
                (user_id, *memory_ids),
            )
            return [_memory(row) for row in rows]

        return await self._query(read)

    async def _list_memories(self, user_id: str, limit: int | None) -> list[Memory]:
        def read(conn: sqlite3.Connection) -> list[Memory]:
            rows = conn.execute(
                f"SELECT {FIELDS} FROM memories WHERE user_id = ? ORDER BY stamp DESC LIMIT ?",
                (user_id, -1 if limit is None else limit),
            )
            return [_memory(row) for row in rows]

        return await self._query(read)

    async def _search_memories(
        self, user_id: str, terms: Sequence[str], limit: int
    ) -> list[Memory]:
        return await self._query(lambda conn: self._search_rows(conn, user_id, terms, limit))

    @staticmethod
    def _search_rows(
        conn: sqlite3.Connection, user_id: str, terms: Sequence[str], limit: int
    ) -> list[Memory]:
        """The keyword search, on `conn` (inside the caller's read transaction)."""
        rows = conn.execute(
            f"SELECT {_SEARCH_COLUMNS} FROM memory_terms"
            " JOIN memories m ON m.seq = memory_terms.rowid"
            " WHERE memory_terms MATCH ? AND m.user_id = ?"
            " ORDER BY bm25(memory_terms), m.stamp DESC LIMIT ?",
            (_match(user_id, terms), user_id, limit),
        )
        return [_memory(row) for row in rows]

    async def _memory_vectors(self, user_id: str) -> list[tuple[str, bytes]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = conn.execute(
                "SELECT id, embedding FROM memories WHERE user_id = ? AND embedding IS NOT NULL"
                " ORDER BY stamp",
                (user_id,),
            )
            return [(row[0], row[1]) for row in rows]

        return await self._query(read)

    async def _update_memory(
        self,
        user_id: str,
        memory_id: str,
        text: str,
        expected: int | None,
        vector: Sequence[float] | None,
        now: float,
    ) -> Memory:
        blob = None if vector is None else encode_vector(vector)
        terms = _terms(user_id, text)

        def update(conn: sqlite3.Connection) -> Memory:
            found = conn.execute(
                "SELECT seq, version FROM memories WHERE user_id = ? AND id = ?",
                (user_id, memory_id),
            ).fetchone()
            if found is None:
                raise not_found(memory_id)
            seq, version = found
            if expected is not None and version != expected:
                raise conflict(memory_id, expected, version)
            row = conn.execute(
                f"UPDATE memories SET text = ?, embedding = ?, updated_at = ?, "
                f"version = version + 1, stamp = {NEXT_STAMP} WHERE seq = ? RETURNING {FIELDS}",
                (text, blob, now, user_id, seq),
            ).fetchone()
            conn.execute("UPDATE memory_terms SET terms = ? WHERE rowid = ?", (terms, seq))
            return _memory(row)

        return await self._write(update)

    async def _delete_memory(self, user_id: str, memory_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT seq FROM memories WHERE user_id = ? AND id = ?", (user_id, memory_id)
            ).fetchone()
            if found is not None:
                _forget(conn, [found[0]])
            return found is not None

        return await self._write(delete)

    async def _clear_memories(self, user_id: str) -> int:
        return await self._write(lambda conn: delete_user_memories(conn, user_id))


__all__ = ["SQLiteMemories", "delete_all_memories", "delete_user_memories"]
