"""`PostgresMemories`: the memories of `PostgresStore` — their tables, functions, queries and
the store's memory primitives.

Tables (schema version 3, in the store's schema, both under row-level security like the
others):

- `memories`: one row per memory, keyed (user_id, memory_id), with `stamp`, the user's count
  of memory writes at its last write (indexed with the user: listing, the cap, ties), its
  vector as float32 bytes and `terms`, a tsvector of its tokens each prefixed by its user's
  key (`search.user_terms`), under a GIN index. A lexeme's posting list therefore holds one
  user's memories: a search's cost does not grow with other users' memories, whereas a GIN
  index of plain words would walk every user's entries of a common word. The index is
  built without GIN's pending list (`fastupdate = off`): every search would otherwise scan
  the whole list of recent inserts, of every user, until a vacuum merged it.
- `memory_users`: per user, the number of memories (so the cap costs one row) and the next
  stamp. Every memory write of a user first locks this row, so one user's writes are
  serialised (an exact cap, a compare-and-swap that cannot lose an update) while other
  users' go on in parallel.

The tsvector and tsquery are built here from our own tokens (`'u…tea':1,4`), never by
PostgreSQL's text-search parser, so the result does not depend on the server's locale.

Search under row-level security: `@@` is not leakproof, so in a tenant transaction the
planner may not use the GIN index before the policy's check and would read every memory of
the user instead. `search_memories(query, limit)` is therefore a SECURITY DEFINER function
that runs as the tables' owner and itself confines the search to the transaction's tenant
(`tenantry.user_id`, exactly the policy's condition; no tenant set: no rows). Only the
tenant role may call it. Without row-level security the store runs the same query directly.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

from tenantry.storage.codec import encode_vector
from tenantry.storage.memories import conflict, not_found
from tenantry.storage.remote import RemoteStore
from tenantry.storage.search import tokens, user_terms
from tenantry.types import Memory

T = TypeVar("T")
P = TypeVar("P")

FIELDS = "memory_id, user_id, text, created_at, updated_at, version, session_id, run_id"
"""A memory's columns, in the order of `Memory`'s fields."""
MAX_POSITION = 16_383
"""The largest position a tsvector holds."""
_SEARCH = (
    "SELECT m.* FROM (SELECT * FROM {schema}.memories WHERE terms @@ {query}"
    " AND user_id = {user} OFFSET 0) m"
    " WHERE m.user_id = {user} ORDER BY ts_rank(m.terms, {query}) DESC, m.stamp DESC"
    " LIMIT {limit}"
)
"""The search: the matching rows through the GIN index (user-prefixed lexemes: this user's
memories), then the user's filter. OFFSET 0 keeps the planner from reading the user's rows
through their btree and filtering those instead, which it may prefer when the user holds
most of the table, and which costs every memory of the user. The inner `user_id` condition
(schema version 6) changes no row; it makes the statement routable by user_id (Citus)."""
_TENANT = "nullif(current_setting('tenantry.user_id', true), '')"


def memories_ddl(schema: str) -> str:
    """Give the statements that create the memory tables and functions in `schema` (each
    one a no-op if it is there already)."""
    return f"""
CREATE TABLE IF NOT EXISTS {schema}.memory_users (
    user_id text COLLATE "C" PRIMARY KEY,
    memory_count integer NOT NULL DEFAULT 0,
    next_stamp bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS {schema}.memories (
    user_id text COLLATE "C" NOT NULL,
    memory_id text COLLATE "C" NOT NULL,
    stamp bigint NOT NULL,
    text text NOT NULL,
    terms tsvector NOT NULL,
    embedding bytea,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    version integer NOT NULL,
    session_id text COLLATE "C",
    run_id text COLLATE "C",
    PRIMARY KEY (user_id, memory_id)
);
CREATE INDEX IF NOT EXISTS memories_by_stamp ON {schema}.memories (user_id, stamp);
CREATE INDEX IF NOT EXISTS memories_by_terms ON {schema}.memories USING gin (terms)
    WITH (fastupdate = off);
CREATE OR REPLACE FUNCTION {schema}.add_memory(
    p_user text, p_id text, p_text text, p_terms tsvector, p_embedding bytea,
    p_now double precision, p_session text, p_run text, p_cap integer
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_stamp bigint;
    v_count integer;
BEGIN
    INSERT INTO {schema}.memory_users AS mu (user_id, memory_count, next_stamp)
    VALUES (p_user, 1, 1)
    ON CONFLICT (user_id) DO UPDATE
        SET memory_count = mu.memory_count + 1, next_stamp = mu.next_stamp + 1
    RETURNING mu.next_stamp, mu.memory_count INTO v_stamp, v_count;
    INSERT INTO {schema}.memories (user_id, memory_id, stamp, text, terms, embedding,
        created_at, updated_at, version, session_id, run_id)
    VALUES (p_user, p_id, v_stamp, p_text, p_terms, p_embedding, p_now, p_now, 1,
        p_session, p_run);
    IF v_count > p_cap THEN
        DELETE FROM {schema}.memories WHERE user_id = p_user AND stamp IN (
            SELECT m.stamp FROM {schema}.memories m WHERE m.user_id = p_user
            ORDER BY m.stamp LIMIT v_count - p_cap);
        UPDATE {schema}.memory_users SET memory_count = p_cap WHERE user_id = p_user;
    END IF;
END $$;
CREATE OR REPLACE FUNCTION {schema}.update_memory(
    p_user text, p_id text, p_text text, p_terms tsvector, p_embedding bytea,
    p_now double precision, p_expected integer,
    OUT o_version integer, OUT o_found integer, OUT o_created double precision,
    OUT o_session text, OUT o_run text
) LANGUAGE plpgsql AS $$
DECLARE
    v_stamp bigint;
BEGIN
    UPDATE {schema}.memory_users SET next_stamp = next_stamp + 1 WHERE user_id = p_user
    RETURNING next_stamp INTO v_stamp;
    SELECT version INTO o_found FROM {schema}.memories
    WHERE user_id = p_user AND memory_id = p_id;
    IF o_found IS NULL OR (p_expected IS NOT NULL AND o_found <> p_expected) THEN
        RETURN;
    END IF;
    UPDATE {schema}.memories SET text = p_text, terms = p_terms, embedding = p_embedding,
        updated_at = p_now, version = o_found + 1, stamp = v_stamp
    WHERE user_id = p_user AND memory_id = p_id
    RETURNING version, created_at, session_id, run_id
    INTO o_version, o_created, o_session, o_run;
END $$;
{search_ddl(schema)}"""


def search_ddl(schema: str) -> str:
    """Give the statements that create (or replace) `search_memories` in `schema`."""
    return f"""
CREATE OR REPLACE FUNCTION {schema}.search_memories(p_query tsquery, p_limit integer)
RETURNS SETOF {schema}.memories LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY EXECUTE '{_SEARCH.format(schema=schema, user="$1", query="$2", limit="$3")}'
    USING {_TENANT}, p_query, p_limit;
END $$;
REVOKE ALL ON FUNCTION {schema}.search_memories(tsquery, integer) FROM PUBLIC;
"""


def search_grant(schema: str, role: str) -> str:
    """Give the statement that lets the tenant role search (see the module's docstring)."""
    return f"GRANT EXECUTE ON FUNCTION {schema}.search_memories(tsquery, integer) TO {role}"


class MemoryQueries:
    """The memory queries, with the (quoted) schema name filled in once."""

    def __init__(self, schema: str) -> None:
        lock = f"SELECT 1 FROM {schema}.memory_users WHERE user_id = %(u)s FOR UPDATE"
        self.add = (
            f"SELECT {schema}.add_memory(%(u)s, %(id)s, %(text)s, %(terms)s::tsvector,"
            " %(vector)s, %(now)s, %(session)s, %(run)s, %(cap)s)"
        )
        self.update = (
            f"SELECT * FROM {schema}.update_memory(%(u)s, %(id)s, %(text)s,"
            " %(terms)s::tsvector, %(vector)s, %(now)s, %(expected)s)"
        )
        self.by_id = (
            f"SELECT {FIELDS} FROM {schema}.memories"
            " WHERE user_id = %(u)s AND memory_id = ANY(%(ids)s)"
        )
        self.newest = (
            f"SELECT {FIELDS} FROM {schema}.memories WHERE user_id = %(u)s"
            " ORDER BY stamp DESC LIMIT %(limit)s"
        )
        self.vectors = (
            f"SELECT memory_id, embedding FROM {schema}.memories"
            " WHERE user_id = %(u)s AND embedding IS NOT NULL ORDER BY stamp"
        )
        self.search_as_tenant = (
            f"SELECT {FIELDS} FROM {schema}.search_memories(%(q)s::tsquery, %(limit)s)"
        )
        search = _SEARCH.format(
            schema=schema, user="%(u)s", query="%(q)s::tsquery", limit="%(limit)s"
        )
        self.search = f"SELECT {FIELDS} FROM ({search}) found"
        self.delete = (
            f"{lock}; WITH gone AS (DELETE FROM {schema}.memories"
            " WHERE user_id = %(u)s AND memory_id = %(id)s RETURNING 1)"
            f" UPDATE {schema}.memory_users SET memory_count = memory_count - 1"
            " WHERE user_id = %(u)s AND EXISTS (SELECT 1 FROM gone) RETURNING 1"
        )
        self.clear = (
            f"{lock}; DELETE FROM {schema}.memory_users WHERE user_id = %(u)s;"
            f" WITH gone AS (DELETE FROM {schema}.memories WHERE user_id = %(u)s RETURNING 1)"
            " SELECT count(*) FROM gone"
        )


def _tsvector(user_id: str, text: str) -> str:
    """Give the tsvector literal of a memory's prefixed tokens with their positions. Its
    lexemes hold letters and digits only, so they need no escaping inside the quotes."""
    positions: dict[str, list[str]] = {}
    for i, term in enumerate(user_terms(user_id, tokens(text)), 1):
        positions.setdefault(term, []).append(str(min(i, MAX_POSITION)))
    return " ".join(f"'{term}':{','.join(at)}" for term, at in positions.items())


def _tsquery(user_id: str, terms: Sequence[str]) -> str:
    return " | ".join(f"'{term}'" for term in user_terms(user_id, terms))


def _memory(row: Any) -> Memory:
    return Memory(*row)


class PostgresMemories(RemoteStore[P]):
    """The memory primitives of `PostgresStore`, on its tenant transactions."""

    _mq: MemoryQueries
    _rls: bool

    @abstractmethod
    async def _tenant(self, user_id: str, sql: str, params: dict[str, Any]) -> list[Any]: ...

    async def _rows(self, user_id: str, sql: str, params: dict[str, Any]) -> list[Any]:
        """Give the rows of `sql` run as one transaction of the user (`_run`, `_tenant`)."""
        return await self._run(lambda: self._tenant(user_id, sql, {"u": user_id, **params}))

    async def _add_memory(self, memory: Memory, vector: Sequence[float] | None) -> None:
        cap = self._max_memories
        params = {
            "id": memory.id,
            "text": memory.text,
            "terms": _tsvector(memory.user_id, memory.text),
            "vector": None if vector is None else encode_vector(vector),
            "now": memory.created_at,
            "session": memory.session_id,
            "run": memory.run_id,
            "cap": 2**31 - 1 if cap is None else cap,
        }
        await self._rows(memory.user_id, self._mq.add, params)

    async def _memories_by_id(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        rows = await self._rows(user_id, self._mq.by_id, {"ids": list(memory_ids)})
        return [_memory(row) for row in rows]

    async def _list_memories(self, user_id: str, limit: int | None) -> list[Memory]:
        rows = await self._rows(user_id, self._mq.newest, {"limit": limit})
        return [_memory(row) for row in rows]

    async def _search_memories(
        self, user_id: str, terms: Sequence[str], limit: int
    ) -> list[Memory]:
        sql = self._mq.search_as_tenant if self._rls else self._mq.search
        params = {"q": _tsquery(user_id, terms), "limit": limit}
        return [_memory(row) for row in await self._rows(user_id, sql, params)]

    async def _memory_vectors(self, user_id: str) -> list[tuple[str, bytes]]:
        rows = await self._rows(user_id, self._mq.vectors, {})
        return [(row[0], bytes(row[1])) for row in rows]

    async def _update_memory(
        self,
        user_id: str,
        memory_id: str,
        text: str,
        expected: int | None,
        vector: Sequence[float] | None,
        now: float,
    ) -> Memory:
        params = {
            "id": memory_id,
            "text": text,
            "terms": _tsvector(user_id, text),
            "vector": None if vector is None else encode_vector(vector),
            "now": now,
            "expected": expected,
        }
        ((version, found, created, session, run),) = await self._rows(
            user_id, self._mq.update, params
        )
        if found is None:
            raise not_found(memory_id)
        if version is None:
            assert expected is not None
            raise conflict(memory_id, expected, found)
        return Memory(memory_id, user_id, text, created, now, version, session, run)

    async def _delete_memory(self, user_id: str, memory_id: str) -> bool:
        return bool(await self._rows(user_id, self._mq.delete, {"id": memory_id}))

    async def _clear_memories(self, user_id: str) -> int:
        ((count,),) = await self._rows(user_id, self._mq.clear, {})
        return int(count)


__all__ = [
    "FIELDS",
    "MemoryQueries",
    "PostgresMemories",
    "memories_ddl",
    "search_ddl",
    "search_grant",
]
