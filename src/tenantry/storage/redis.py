"""`RedisStore`: many stateless replicas share one Redis server (redis-py asyncio).

Keys, all under a configurable prefix (several apps can share one Redis; a prefix holds no
':', so two different prefixes never share a key), with user and session ids percent-encoded
(`urllib.parse.quote(id, safe="")`), so that ':' '{' '}' '*' '%' and unicode in an id can
neither make two scopes share a key nor reach outside the prefix:

    {prefix}:messages:{user}:{session}   list of the scope's messages (JSON), oldest first
    {prefix}:state:{user}:{session}      the scope's session state (JSON)
    {prefix}:summary:{user}:{session}    the session's summary (JSON)
    {prefix}:sessions:{user}             set of the user's session ids
    {prefix}:users                       set of user ids that have a session
    {prefix}:activity                    sorted set "{user}:{session}" -> time of last write
    {prefix}:lock:{user}:{session}       the scope's turn lock (random token, with a TTL)
    {prefix}:idem:{user}:{key}           an idempotency record (JSON), with its TTL
    {prefix}:idemkeys:{user}             sorted set "{session}:{key}" -> expiry, the user's
                                         records (to delete them with a session or the user)

Every key of one user (all but users and activity) is built by `_user_key`.

The users' memories are four keys per user (`redis_memories`, `RedisMemories`, a base of the
store); their usage a hash per user per UTC day, their budget override a hash per user, and
the shared rate limit a bucket per user (`redis_usage`, `RedisUsage`, a base too). A turn
is one Lua script (`redis_lua`): append, trim to max_messages, set state, update the
indexes, add the turn's usage, store the turn's idempotency record, all atomic. Listing
users or sessions reads an index set and pruning reads the activity sorted set, so no
operation ever uses KEYS or SCAN. Deleting a scope is a script too, and pruning re-checks
each scope's last activity inside it, so a scope written meanwhile survives.
Commands are never retried by the client: a retried append could store a turn twice.

Turn lock: `SET key token NX PX lock_ttl` after the in-process lock (see `locks`), renewed
every third of lock_ttl while the turn runs (a slow model call keeps its lock), released by a
compare-and-delete script. A process that dies frees its locks after at most lock_ttl. The
append script checks that the lock still holds the turn's token and refuses the write
otherwise (`ScopeLockLost`), so a turn that lost its lock can never interleave with the next.

Durability is Redis's: a turn is acknowledged once Redis applied it in memory. With
`appendonly yes` and `appendfsync always` it survives a crash of the Redis server; with
`appendfsync everysec` (the usual setting) up to about a second of acknowledged turns can be
lost; with no persistence (no AOF, no RDB) a restart of Redis loses every conversation. A
failover to an asynchronous replica can lose the newest turns too. Redis Cluster is not
supported (a turn's keys live in different slots); use one primary.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from tenantry.errors import (
    InvalidInput,
    MissingDependency,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)
from tenantry.storage.base import PRUNE_BATCH, Clock, Snapshot, TurnWrite
from tenantry.storage.codec import decode_message, decode_state, encode_message
from tenantry.storage.idempotency import IdempotencyRecord, reused
from tenantry.storage.locks import lost
from tenantry.storage.memories import DEFAULT_MAX_MEMORIES
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
from tenantry.types import Message

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("redis", "redis") from exc

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def encode_id(value: str) -> str:
    """Give an id as it appears in a key: percent-encoded, so it holds no ':' '{' '}' '*'."""
    return quote(value, safe="")


@dataclass(slots=True)
class _Keys:
    """The keys of one scope, and of the indexes it is listed in."""

    messages: str
    state: str
    summary: str
    sessions: str
    lock: str
    member: str


@dataclass(slots=True)
class _Lock:
    key: str
    token: str
    renewal: asyncio.Task[None] | None = field(default=None, repr=False)


class RedisStore(RedisUsage[_Lock], RedisMemories[_Lock]):
    """`RedisStore("redis://localhost:6379/0", prefix="tenantry", max_messages=100)`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tenantry",
        max_messages: int | None = None,
        max_memories: int | None = DEFAULT_MAX_MEMORIES,
        usage_retention_days: int = DEFAULT_USAGE_RETENTION_DAYS,
        pool_size: int = 20,
        lock_ttl: float = 10.0,
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
        self.prefix = prefix
        self._url = url
        self.lock_ttl = float(lock_ttl)
        self._users_key = f"{prefix}:users"
        self._activity_key = f"{prefix}:activity"
        self._registry_key = f"{prefix}:memory_users"
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    # --- keys and connections -----------------------------------------------------------------

    def _user_key(self, kind: str, user_id: str, *rest: str) -> str:
        """Give the key of kind `kind` of one user, `rest` (already encoded) after the user."""
        return ":".join((self.prefix, kind, encode_id(user_id), *rest))

    def _keys(self, scope: Scope) -> _Keys:
        user, session = scope.user_id, encode_id(scope.session_id)
        return _Keys(
            messages=self._user_key("messages", user, session),
            state=self._user_key("state", user, session),
            summary=self._user_key("summary", user, session),
            sessions=self._user_key("sessions", user),
            lock=self._user_key("lock", user, session),
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

    def _ready(self) -> Redis:
        """Give the client, creating it (and its pool, on this loop) on first use."""
        self._check_open()
        if self._client is None:
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._pool_size,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
            )
            client = Redis(connection_pool=pool)
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
        return self._client

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._ready()
        return await self._scripts[name](keys=keys, args=args)

    def _translate(self, exc: Exception, scope: Scope | None) -> StoreError | None:
        if not isinstance(exc, redis_errors.RedisError):
            return None
        if scope is not None and LOCK_LOST in str(exc):
            return lost(scope)
        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
            return StoreUnavailable(
                f"Redis is unreachable: {str(exc).rstrip('.')}; check that the server "
                "runs and the store URL is right (or raise pool_size if no connection "
                "was free)"
            )
        return StoreError(f"Redis error: {exc}")

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
        ]
        script_keys = [keys.messages, keys.state, keys.sessions, self._users_key]
        script_keys += [self._activity_key, keys.lock]
        day = usage_day(write.now)
        script_keys += self._usage_keys(scope.user_id, day)
        script_keys.append(self._record_key(scope.user_id, key))
        script_keys.append(self._user_key("idemkeys", scope.user_id))
        counted = [] if write.usage is None else usage_args(day, write.usage)
        args += [len(counted), *counted, *record_args(record, write.now)]
        args += [encode_message(m) for m in write.messages]

        async def append() -> None:
            try:
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

    async def _size(self, scope: Scope) -> int:
        key = self._keys(scope).messages
        return int(await self._run(lambda: self._ready().llen(key)))

    async def _get_state(self, scope: Scope) -> str | None:
        key = self._keys(scope).state
        state = await self._run(lambda: self._ready().get(key))
        return None if state is None else _text(state)

    async def _delete(self, scopes: Sequence[Scope], cutoff: str = "") -> int:
        """Delete scopes (only those idle since before `cutoff`, if given), in batches."""
        deleted = 0
        for start in range(0, len(scopes), PRUNE_BATCH):
            keys = [self._users_key, self._activity_key]
            args = [cutoff]
            for scope in scopes[start : start + PRUNE_BATCH]:
                k = self._keys(scope)
                keys += [k.messages, k.state, k.summary, k.sessions]
                args += [scope.user_id, scope.session_id, k.member]
            deleted += await self._delete_batch(keys, args)
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

    async def _members(self, key: str) -> list[str]:
        members = await self._run(lambda: self._ready().smembers(key))
        return sorted(_text(member) for member in members)

    async def _list_users(self) -> list[str]:
        return await self._members(self._users_key)

    async def _list_sessions(self, user_id: str) -> list[str]:
        return await self._members(self._user_key("sessions", user_id))

    async def _prune(self, cutoff: float) -> int:
        bound = f"({cutoff!r}"
        total = 0
        while True:
            members: list[Any] = await self._run(
                lambda: self._ready().zrangebyscore(
                    self._activity_key, "-inf", bound, start=0, num=PRUNE_BATCH
                )
            )
            scopes = [_scope_of(_text(member)) for member in members]
            total += await self._delete(scopes, repr(cutoff))
            if len(members) < PRUNE_BATCH:
                return total

    # --- the turn lock ------------------------------------------------------------------------

    async def _try_lock(self, scope: Scope) -> _Lock | None:
        key = self._keys(scope).lock
        token = secrets.token_hex(16)
        ttl_ms = round(self.lock_ttl * 1000)
        if not await self._ready().set(key, token, nx=True, px=ttl_ms):
            return None
        lock = _Lock(key, token)
        lock.renewal = asyncio.ensure_future(self._renew(lock, ttl_ms))
        return lock

    async def _renew(self, lock: _Lock, ttl_ms: int) -> None:
        """Push the lock's expiry forward every third of its TTL until released or lost; a
        failed renewal is retried, and a lost lock is caught by the append's fence."""
        while True:
            await asyncio.sleep(self.lock_ttl / 3)
            try:
                if not await self._script("renew", [lock.key], [lock.token, ttl_ms]):
                    return
            except redis_errors.RedisError:
                continue
            except StoreClosed:
                return

    async def _unlock(self, lock: _Lock) -> None:
        if lock.renewal is not None:
            lock.renewal.cancel()
        await self._script("release", [lock.key], [lock.token])

    # --- lifecycle ----------------------------------------------------------------------------

    async def _ping_server(self) -> None:
        await self._ready().ping()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)


def _window(limit: int | None, offset: int) -> tuple[int, int]:
    """Give LRANGE's (start, stop) for the newest `limit` messages after skipping `offset`."""
    return (0 if limit is None else -(offset + limit)), -(offset + 1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scope_of(member: str) -> Scope:
    user, session = member.split(":", 1)
    return Scope(unquote(user), unquote(session))


__all__ = ["RedisStore", "encode_id"]
