"""`RedisStore`: many stateless replicas share one Redis server or one Redis Cluster
(redis-py asyncio).

Keys, all under a configurable prefix (several apps can share one Redis; a prefix holds no
':', so two different prefixes never share a key), with user and session ids percent-encoded
(`encode_id`), so that ':' '{' '}' '*' '%' and unicode in an id can neither make two scopes
share a key nor reach outside the prefix. Every key is named by `KeyLayout` (`redis_keys`,
through `_user_key` for every key of one user): on one server
`{prefix}:messages:{user}:{session}`, `...:state:...`, `...:summary:...`, `...:lock:...`,
`{prefix}:sessions:{user}`, `{prefix}:idem:{user}:{key}` (an idempotency record, JSON, with
its TTL), `{prefix}:idemkeys:{user}` (sorted set "{session}:{key}" -> expiry, the user's
records), and the indexes `{prefix}:users` (users with a session) and `{prefix}:activity`
("{user}:{session}" -> time of last write) — the names of every earlier release. On Redis
Cluster (`cluster=True`, or `redis+cluster://h:p,h:p/`) the user id is each per-user key's
hash tag, so all of a user's keys share one slot, and each index has one bucket per slot,
the user's bucket in the user's slot.

The users' memories are four keys per user (`redis_memories`, `RedisMemories`, a base of the
store); their usage a hash per user per UTC day, their budget override a hash per user, and
the shared rate limit a bucket per user (`redis_usage`, `RedisUsage`, a base too). A turn
is one Lua script (`redis_lua`): append, trim to max_messages, set state, update the
indexes, store the turn's idempotency record, add the turn's usage, all atomic, in one
slot. Listing users or sessions reads index sets and pruning reads the activity sorted sets,
so no operation ever uses KEYS or SCAN. Deleting a scope is a script too, and pruning
re-checks each scope's last activity inside it, so a scope written meanwhile survives.
Commands are never retried by the client: a retried append could store a turn twice
(`redis_client`).

Turn lock: one key per scope, `SET NX PX` with a random token, renewed while the turn runs, and
checked by the append script (`redis_locks`, `RedisLocks`, a base of the store).

Durability is Redis's: a turn is acknowledged once the primary applied it in memory. With
`appendonly yes` and `appendfsync always` it survives a crash of the Redis server; with
`appendfsync everysec` (the usual setting) up to about a second of acknowledged turns can be
lost; with no persistence (no AOF, no RDB) a restart of Redis loses every conversation.
Replication is asynchronous, so a failover to a replica can lose the newest turns too, unless
`wait_replicas=N`: then each turn is followed by `WAIT N` on the same connection and is
acknowledged only once N replicas have it (otherwise the call fails with StoreUnavailable).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar
from urllib.parse import unquote

from tenantry.errors import InvalidInput, MissingDependency, StoreError
from tenantry.storage.base import PRUNE_BATCH, Clock, Snapshot, TurnWrite
from tenantry.storage.codec import decode_message, decode_state, encode_message
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.storage.locks import lost
from tenantry.storage.memories import DEFAULT_MAX_MEMORIES
from tenantry.storage.redis_client import (
    Client,
    connect,
    eval_and_wait,
    idle_members,
    index_members,
    translate,
)
from tenantry.storage.redis_keys import KeyLayout, encode_id
from tenantry.storage.redis_locks import RedisLock, RedisLocks
from tenantry.storage.redis_lua import (
    APPEND,
    DELETE,
    KEY_TAKEN,
    LOCK_LOST,
    MEMORY_SCRIPTS,
    RELEASE,
    RENEW,
    SET_SUMMARY,
)
from tenantry.storage.redis_memories import MemoryKeys, RedisMemories
from tenantry.storage.redis_records import decode_record, record_args
from tenantry.storage.redis_usage import USAGE_SCRIPTS, RedisUsage, usage_args
from tenantry.storage.usage import DEFAULT_USAGE_RETENTION_DAYS, usage_day
from tenantry.tenancy import Scope
from tenantry.types import Admission, Message

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("redis", "redis") from exc

T = TypeVar("T")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@dataclass(slots=True)
class _Keys:
    """The keys of one scope, and of the indexes it is listed in."""

    messages: str
    state: str
    summary: str
    sessions: str
    lock: str
    users: str
    activity: str
    member: str


class RedisStore(RedisUsage[RedisLock], RedisMemories[RedisLock], RedisLocks):
    """`RedisStore("redis://localhost:6379/0", prefix="tenantry", max_messages=100)`;
    `RedisStore("redis://h1:7000,h2:7001/", cluster=True)` for Redis Cluster."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tenantry",
        cluster: bool = False,
        max_messages: int | None = None,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        usage_retention_days: int = DEFAULT_USAGE_RETENTION_DAYS,
        pool_size: int = 20,
        lock_ttl: float = 10.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            max_messages=max_messages,
            max_memories=max_memories,
            usage_retention_days=usage_retention_days,
            clock=clock,
            pool_size=pool_size,
        )
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise InvalidInput(
                f"key prefix must be 1-100 of A-Z a-z 0-9 _ . - (no ':', so that two "
                f"prefixes never share a key), got {prefix!r}"
            )
        if not isinstance(lock_ttl, int | float) or lock_ttl < 0.1:
            raise InvalidInput(f"lock_ttl must be at least 0.1 seconds, got {lock_ttl!r}")
        if (
            not isinstance(wait_replicas, int)
            or isinstance(wait_replicas, bool)
            or not (0 <= wait_replicas <= 100)
        ):
            raise InvalidInput(f"wait_replicas must be 0-100, got {wait_replicas!r}")
        if not isinstance(wait_timeout, int | float) or wait_timeout <= 0:
            raise InvalidInput(f"wait_timeout must be positive seconds, got {wait_timeout!r}")
        self.prefix = prefix
        self.cluster = bool(cluster)
        self._url = url
        self.lock_ttl = float(lock_ttl)
        self.wait_replicas = wait_replicas
        self.wait_timeout = float(wait_timeout)
        self.layout = KeyLayout(prefix, cluster=self.cluster)
        self._client: Client | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._gate: asyncio.Semaphore | None = None
        self._discovered = False
        self._discovery = asyncio.Lock()

    # --- keys and connections -----------------------------------------------------------------

    def _user_key(self, kind: str, user_id: str, *rest: str) -> str:
        """Give the key of kind `kind` of one user, `rest` (already encoded) after the user."""
        return ":".join((self.layout.user_key(kind, user_id), *rest))

    def _keys(self, scope: Scope) -> _Keys:
        user, session = scope.user_id, encode_id(scope.session_id)
        return _Keys(
            messages=self._user_key("messages", user, session),
            state=self._user_key("state", user, session),
            summary=self._user_key("summary", user, session),
            sessions=self._user_key("sessions", user),
            lock=self._user_key("lock", user, session),
            users=self.layout.index_key("users", user),
            activity=self.layout.index_key("activity", user),
            member=f"{encode_id(user)}:{session}",
        )

    def _memory_keys(self, user_id: str) -> MemoryKeys:
        return MemoryKeys(
            memories=self._user_key("memories", user_id),
            order=self._user_key("memorder", user_id),
            terms=self._user_key("memterms", user_id),
            vectors=self._user_key("memvectors", user_id),
        )

    def _record_key(self, user_id: str, key: str) -> str:
        return self._user_key("idem", user_id, encode_id(key))

    def _ready(self) -> Client:
        """Give the client, creating it (and its pools, on this loop) on first use."""
        self._check_open()
        if self._client is None:
            client = connect(self._url, cluster=self.cluster, pool_size=self._pool_size)
            for name, source in (
                ("append", APPEND),
                ("delete", DELETE),
                ("renew", RENEW),
                ("release", RELEASE),
                ("set_summary", SET_SUMMARY),
                *MEMORY_SCRIPTS.items(),
                *USAGE_SCRIPTS.items(),
            ):
                self._scripts[name] = client.register_script(source)
            self._client = client
            # The cluster client's per-node pools refuse a connection beyond pool_size
            # instead of waiting for one, so the store waits: at most pool_size operations
            # at once, each using at most one connection per node.
            self._gate = asyncio.Semaphore(self._pool_size) if self.cluster else None
            self._discovered = False
            self._discovery = asyncio.Lock()
        return self._client

    async def _run(self, work: Callable[[], Awaitable[T]], scope: Scope | None = None) -> T:
        if not self.cluster:
            return await super()._run(work, scope)

        async def gated() -> T:
            client = self._ready()
            assert self._gate is not None
            assert isinstance(client, RedisCluster)
            if not self._discovered:  # once, not by every first caller at once
                async with self._discovery:
                    if not self._discovered:
                        await client.initialize()
                        self._discovered = True
            async with self._gate:
                return await work()

        return await super()._run(gated, scope)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._ready()
        return await self._scripts[name](keys=keys, args=args)

    def _translate(self, exc: Exception, scope: Scope | None) -> StoreError | None:
        if (
            scope is not None
            and isinstance(exc, redis_errors.ResponseError)
            and (LOCK_LOST in str(exc))
        ):
            return lost(scope)
        return translate(exc)

    async def _index_members(self, index: str) -> list[str]:
        """Give every member of the set `index` (every bucket, on a cluster)."""
        client, layout = self._ready(), self.layout
        members = await self._run(lambda: index_members(client, layout, index))
        return sorted({_text(member) for member in members})

    async def _idle(self, bound: str) -> tuple[list[str], bool]:
        """Give members of the activity index last written before `bound` (at most
        PRUNE_BATCH per bucket), and whether some bucket has more."""
        client, layout = self._ready(), self.layout
        found, more = await self._run(lambda: idle_members(client, layout, bound, PRUNE_BATCH))
        return [_text(member) for member in found], more

    # --- primitives ---------------------------------------------------------------------------

    async def _append(self, scope: Scope, write: TurnWrite) -> None:
        fence = self._fence(scope)
        token = "" if fence is None else fence.token
        keys, record = self._keys(scope), write.idempotency
        key = "" if record is None else record.key
        args: list[Any] = [
            repr(write.now),
            self._max_messages or 0,
            "0" if write.state is None else "1",
            write.state or "",
            scope.session_id,
            scope.user_id,
            keys.member,
            token,
            *record_args(record, write.now),
        ]
        script_keys = [keys.messages, keys.state, keys.sessions, keys.users]
        script_keys += [keys.activity, keys.lock, self._record_key(scope.user_id, key)]
        script_keys.append(self._user_key("idemkeys", scope.user_id))
        day = usage_day(write.now)
        script_keys += self._usage_keys(scope.user_id, day)
        counted = [] if write.usage is None else usage_args(day, write.usage)
        args += [len(counted), *counted, *(encode_message(m) for m in write.messages)]
        waiting = (self.wait_replicas, self.wait_timeout)

        async def append() -> None:
            try:
                if self.wait_replicas:  # acknowledged once that many replicas have it
                    await eval_and_wait(self._ready(), APPEND, script_keys, args, *waiting)
                else:
                    await self._script("append", script_keys, args)
            except redis_errors.ResponseError as exc:
                if record is not None and KEY_TAKEN in str(exc):
                    raise reused(record.key) from None
                raise

        await self._run(append, scope)

    async def _get_record(self, user_id: str, key: str) -> IdempotencyRecord | None:
        name = self._record_key(user_id, key)
        found = await self._run(lambda: self._ready().get(name))
        if found is None:
            return None
        return decode_record(key, found)

    async def _forget_records(self, user_id: str, session_id: str | None) -> None:
        """Delete the user's idempotency records (of one session, if given)."""
        index = self._user_key("idemkeys", user_id)
        found: list[Any] = await self._run(lambda: self._ready().zrange(index, 0, -1))
        members = [_text(m) for m in found]
        if session_id is not None:
            mine = encode_id(session_id) + ":"
            members = [m for m in members if m.startswith(mine)]
        if not members:
            return
        names = [self._user_key("idem", user_id, m.split(":", 1)[1]) for m in members]

        async def forget() -> None:
            async with self._ready().pipeline(transaction=True) as pipe:
                pipe.delete(*names)
                pipe.zrem(index, *members)
                await pipe.execute()

        await self._run(forget)

    async def _read(self, scope: Scope, limit: int | None, offset: int) -> list[Message]:
        start, stop = _window(limit, offset)
        key = self._keys(scope).messages
        rows = await self._run(lambda: self._ready().lrange(key, start, stop))
        return [decode_message(row) for row in rows]

    async def _snapshot(self, scope: Scope, limit: int | None) -> Snapshot:
        keys = self._keys(scope)
        start, stop = _window(limit, 0)

        async def read() -> list[Any]:
            async with self._ready().pipeline(transaction=True) as pipe:
                if limit != 0:
                    pipe.lrange(keys.messages, start, stop)
                pipe.get(keys.state)
                return list(await pipe.execute())

        *rows, state = await self._run(read)
        messages = [decode_message(row) for row in rows[0]] if rows else []
        return Snapshot(messages, decode_state(state))

    async def _snapshot_and_admission(
        self, scope: Scope, limit: int | None, day: date, budgeted_only: bool
    ) -> tuple[Snapshot, Admission]:
        """The snapshot's reads and the admission's hashes in one transaction: one round trip."""
        keys = self._keys(scope)
        start, stop = _window(limit, 0)
        hashes = self._admission_keys(scope.user_id, day)

        async def read() -> list[Any]:
            async with self._ready().pipeline(transaction=True) as pipe:
                if limit != 0:
                    pipe.lrange(keys.messages, start, stop)
                pipe.get(keys.state)
                for key in hashes:
                    pipe.hgetall(key)
                return list(await pipe.execute())

        replies = await self._run(read)
        *rows, state = replies[: -len(hashes)]
        messages = [decode_message(row) for row in rows[0]] if rows else []
        admission = self._admission_of(replies[-len(hashes) :], day)
        return Snapshot(messages, decode_state(state)), admission

    async def _size(self, scope: Scope) -> int:
        key = self._keys(scope).messages
        return int(await self._run(lambda: self._ready().llen(key)))

    async def _get_state(self, scope: Scope) -> str | None:
        key = self._keys(scope).state
        state = await self._run(lambda: self._ready().get(key))
        return None if state is None else _text(state)

    async def _delete(self, scopes: Sequence[Scope], cutoff: str = "") -> int:
        """Delete scopes (only those idle since before `cutoff`, if given), in batches of
        scopes listed in the same index buckets (so each batch is in one slot)."""
        groups: dict[str, list[tuple[Scope, _Keys]]] = {}
        for scope in scopes:
            keys = self._keys(scope)
            groups.setdefault(keys.users, []).append((scope, keys))
        deleted = 0
        for group in groups.values():
            for start in range(0, len(group), PRUNE_BATCH):
                batch = group[start : start + PRUNE_BATCH]
                script_keys = [batch[0][1].users, batch[0][1].activity]
                args = [cutoff]
                for scope, k in batch:
                    script_keys += [k.messages, k.state, k.summary, k.sessions]
                    args += [scope.user_id, scope.session_id, k.member]
                deleted += await self._delete_batch(script_keys, args)
        return deleted

    async def _delete_batch(self, keys: list[str], args: list[str]) -> int:
        return int(await self._run(lambda: self._script("delete", keys, args)))

    async def _clear_scope(self, scope: Scope) -> None:
        await self._delete([scope])
        await self._forget_records(scope.user_id, scope.session_id)

    async def _clear_user(self, user_id: str) -> None:
        await self._delete([Scope(user_id, s) for s in await self._list_sessions(user_id)])
        await self._forget_records(user_id, None)
        await self._forget_user(user_id)

    async def _clear_all(self) -> None:
        for user_id in await self._list_users():
            await self._clear_user(user_id)
        await self._forget_every_user()
        await self._forget_usage()

    async def _get_summary(self, scope: Scope) -> str | None:
        key = self._keys(scope).summary
        summary = await self._run(lambda: self._ready().get(key))
        return None if summary is None else _text(summary)

    async def _set_summary(self, scope: Scope, summary: str) -> None:
        k = self._keys(scope)
        keys = [k.messages, k.state, k.summary]
        await self._run(lambda: self._script("set_summary", keys, [summary]))

    async def _list_users(self) -> list[str]:
        return await self._index_members("users")

    async def _list_sessions(self, user_id: str) -> list[str]:
        key = self._user_key("sessions", user_id)
        members = await self._run(lambda: self._ready().smembers(key))
        return sorted(_text(member) for member in members)

    async def _prune(self, cutoff: float) -> int:
        bound = f"({cutoff!r}"
        total = 0
        while True:
            members, more = await self._idle(bound)
            total += await self._delete([_scope_of(m) for m in members], repr(cutoff))
            if not more:
                return total

    # --- memories' registry -------------------------------------------------------------------

    def _registry_key(self, user_id: str) -> str:
        return self.layout.index_key("memory_users", user_id)

    async def _registered_users(self) -> list[str]:
        return await self._index_members("memory_users")

    # --- the turn lock ------------------------------------------------------------------------

    def _lock_key(self, scope: Scope) -> str:
        return self._keys(scope).lock

    # --- lifecycle ----------------------------------------------------------------------------

    async def _ping_server(self) -> None:
        client = self._ready()
        if self.cluster:  # every primary: a slot whose primary is down is an outage
            await client.ping(target_nodes="primaries")
        else:
            await client.ping()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if isinstance(client, Redis):
            await client.aclose(close_connection_pool=True)
        elif client is not None:
            await client.aclose()


def _window(limit: int | None, offset: int) -> tuple[int, int]:
    """Give LRANGE's (start, stop) for the newest `limit` messages after skipping `offset`."""
    return (0 if limit is None else -(offset + limit)), -(offset + 1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scope_of(member: str) -> Scope:
    user, session = member.split(":", 1)
    return Scope(unquote(user), unquote(session))


__all__ = ["RedisStore", "encode_id"]
