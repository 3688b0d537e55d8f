"""The redis-py client of `RedisStore`: one server (`Redis`) or a cluster (`RedisCluster`),
what its errors mean to tenantry, and a script acknowledged only once replicas have it.

Neither client ever retries a command: a retried append could store a turn twice. The cluster
client still follows MOVED and ASK redirections (the node refused the command, so it never
ran) and finds the new topology after a failover by itself, on the next command.
"""

from __future__ import annotations

import asyncio
import os
from abc import abstractmethod
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from tenantry.errors import InvalidStoreURL, MissingDependency, StoreError, StoreUnavailable
from tenantry.storage.redis_keys import SLOTS, KeyLayout, slot_tags
from tenantry.storage.remote import RemoteStore

try:
    import redis
    from redis import exceptions as redis_errors
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("redis", "redis") from exc

Client = Redis | RedisCluster

_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN, "TTL exhausted" (a MOVED storm)
    redis_errors.AskError,  # MOVED and ASK not followed (the slot is moving)
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,  # a primary just turned replica
    redis_errors.RedisClusterException,  # no node covers the slot, topology unknown
)

_TRANSIENT = ("UNBLOCKED", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "TRYAGAIN", "LOADING")
"""Error replies of a node whose role or slots change under the command (a failover)."""


CLUSTER_SOCKET_TIMEOUT = 5.0
"""Seconds a cluster node may take to answer or accept a connection: a node lost in a
failover must not hold a turn (and, through its lock, the turns after it) for longer; the
command then fails as StoreUnavailable (503, retry). A URL's `socket_timeout` overrides it."""


def connect(url: str, *, cluster: bool, pool_size: int) -> Client:
    """Give a client for `url` (no connection is made yet). For a cluster, `url`'s netloc
    may list several seed nodes: `redis://[user:pass@]host:port,host:port/`."""
    retry = Retry(NoBackoff(), 0)
    if not cluster:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=pool_size, retry=retry, health_check_interval=30
        )
        return Redis(connection_pool=pool)
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    seeds = [_node(host) for host in hosts.split(",") if host]
    if not seeds:
        raise InvalidStoreURL(f"a Redis Cluster URL names at least one host:port, got {url!r}")
    if parts.path.strip("/") not in ("", "0"):
        raise InvalidStoreURL(f"Redis Cluster has database 0 only, got {parts.path!r}")
    first = urlunsplit(parts._replace(netloc=(f"{auth}@" if auth else "") + hosts.split(",")[0]))
    return RedisCluster.from_url(
        first,
        startup_nodes=seeds,
        max_connections=pool_size,
        retry=retry,
        health_check_interval=30,
        socket_timeout=CLUSTER_SOCKET_TIMEOUT,
        socket_connect_timeout=CLUSTER_SOCKET_TIMEOUT,
    )


def _node(address: str) -> ClusterNode:
    host, _, port = unquote(address).rpartition(":")
    if not host or not port.isdigit():
        raise InvalidStoreURL(f"a Redis Cluster node must be host:port, got {address!r}")
    return ClusterNode(host.strip("[]"), int(port))


def translate(exc: Exception) -> StoreError | None:
    """Give the tenantry error of a redis-py error (None for anything else)."""
    if isinstance(exc, redis_errors.ClusterCrossSlotError):
        return StoreError(f"Redis error: {exc}")  # a bug of ours, never retryable
    if isinstance(exc, _UNAVAILABLE) or (
        isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_TRANSIENT)
    ):
        return StoreUnavailable(
            f"Redis is unreachable or failing over: {str(exc).rstrip('.') or type(exc).__name__}"
            "; check that the server runs and the store URL is right (or raise pool_size if "
            "no connection was free); retry shortly"
        )
    if isinstance(exc, redis_errors.RedisError):
        return StoreError(f"Redis error: {exc}")
    if _raised_in_driver(exc):
        # redis-py's cluster client, when it drops its connections to learn a new topology
        # (a failover), can fail a command another task has in flight on one of them with
        # a plain AttributeError or RuntimeError (a write on a closed transport); the
        # command's outcome is unknown, as for a broken connection.
        return StoreUnavailable(
            f"the Redis client failed while the cluster changed ({type(exc).__name__}: "
            f"{exc}); retry shortly"
        )
    return None


_DRIVER = os.path.dirname(redis.__file__)


def _raised_in_driver(exc: Exception) -> bool:
    """Whether `exc`, a plain Python error, went through redis-py's code."""
    if not isinstance(exc, AttributeError | TypeError | RuntimeError | KeyError | IndexError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(_DRIVER):
            return True
        tb = tb.tb_next
    return False


async def eval_and_wait(
    client: Client, source: str, keys: list[str], args: list[Any], replicas: int, wait_for: float
) -> Any:
    """Run the script `source` and then `WAIT replicas wait_for` on the same connection, so
    that WAIT counts the replicas that have this very write; give the script's result, or
    raise StoreUnavailable when fewer replicas confirmed it in time (the write then stands
    on the primary, and may or may not survive a failover)."""
    ms = max(1, round(wait_for * 1000))
    if isinstance(client, RedisCluster):
        results = await _cluster_eval_and_wait(client, source, keys, args, replicas, ms)
    else:
        async with client.pipeline(transaction=False) as pipe:
            pipe.eval(source, len(keys), *keys, *args)
            pipe.execute_command("WAIT", replicas, ms)
            results = await pipe.execute(raise_on_error=False)
    outcome, confirmed = results
    if isinstance(outcome, Exception):
        raise outcome
    if isinstance(confirmed, Exception):
        raise confirmed
    if int(confirmed) < replicas:
        raise StoreUnavailable(
            f"the write reached the Redis primary but {confirmed} of {replicas} replica(s) "
            f"confirmed it within {wait_for:g}s, so it may be lost in a failover; it may or "
            "may not be stored — retry shortly"
        )
    return outcome


async def _cluster_eval_and_wait(
    client: RedisCluster, source: str, keys: list[str], args: list[Any], replicas: int, ms: int
) -> list[Any]:
    """Both commands go to the primary of the keys' slot, in one pipeline (one connection).
    If that node no longer owns the slot (MOVED: the script did not run), learn the new
    owner by one keyed command and try again, a few times."""
    for _ in range(3):
        node = client.get_node_from_key(keys[0])
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("EVAL", source, len(keys), *keys, *args, target_nodes=node)
            pipe.execute_command("WAIT", replicas, ms, target_nodes=node)
            results = await pipe.execute(raise_on_error=False, allow_redirections=False)
        if not isinstance(results[0], redis_errors.MovedError):
            return list(results)
        await client.exists(keys[0])  # follows the MOVED and updates the slot table
    return list(results)


# The index scripts of Redis Cluster: each runs on one primary, over that primary's buckets of
# one index (`redis_keys`), so that reading an index is one call per primary instead of one
# command per slot. The buckets' names are built here from their head and their tags (one
# argument, not thousands of keys), so they are a node's keys from many slots, not declared
# in KEYS (allow-cross-slot-keys, Redis 7.0 or newer). For each:
# ARGV[1] - the buckets' common head, "{prefix}:{index}:"
# ARGV[2] - the tags of the slots the node serves, separated by spaces

# return every member of every bucket
BUCKET_MEMBERS = """#!lua flags=no-writes,allow-cross-slot-keys
local out = {}
for tag in string.gmatch(ARGV[2], '%S+') do
    local members = redis.call('SMEMBERS', ARGV[1] .. '{' .. tag .. '}')
    for j = 1, #members do
        out[#out + 1] = members[j]
    end
end
return out
"""

# ARGV[3] - the cutoff, as ZRANGEBYSCORE's exclusive max "(time"
# ARGV[4] - how many members at most per bucket
# return {1 if a bucket had ARGV[4] idle members or more else 0, member, member ...}
BUCKET_IDLE = """#!lua flags=no-writes,allow-cross-slot-keys
local out = {0}
local batch = tonumber(ARGV[4])
for tag in string.gmatch(ARGV[2], '%S+') do
    local key = ARGV[1] .. '{' .. tag .. '}'
    local members = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[3], 'LIMIT', 0, batch)
    if #members >= batch then
        out[1] = 1
    end
    for j = 1, #members do
        out[#out + 1] = members[j]
    end
end
return out
"""


async def index_members(client: Client, layout: KeyLayout, index: str) -> list[Any]:
    """Give every member of the set `index`: its one key on one server, every bucket (one
    script per primary) on a cluster."""
    if isinstance(client, RedisCluster):
        head = layout.bucket_head(index)
        replies = await on_every_primary(client, BUCKET_MEMBERS, head, [])
        return [member for reply in replies for member in reply]
    return list(await client.smembers(layout.index_key(index, "")))


async def idle_members(
    client: Client, layout: KeyLayout, bound: str, batch: int
) -> tuple[list[Any], bool]:
    """Give members of the activity index scored below `bound` (at most `batch` per bucket)
    and whether some bucket has more."""
    if isinstance(client, RedisCluster):
        head = layout.bucket_head("activity")
        replies = await on_every_primary(client, BUCKET_IDLE, head, [bound, batch])
        found = [member for reply in replies for member in reply[1:]]
        return found, any(int(reply[0]) for reply in replies)
    key = layout.index_key("activity", "")
    found = list(await client.zrangebyscore(key, "-inf", bound, start=0, num=batch))
    return found, len(found) >= batch


async def on_every_primary(
    client: RedisCluster, source: str, head: str, args: list[Any]
) -> list[Any]:
    """Run the script `source` once on every primary, with ARGV `head`, the tags
    (`slot_tag`) of the slots that primary serves, then `args`; give the replies. Raise
    StoreUnavailable when some slot has no primary (a failover) or moved meanwhile."""
    ranges: dict[tuple[int, int], Any] = dict(await client.cluster_slots())
    owners: dict[tuple[str, int], list[str]] = {}
    covered = 0
    for (start, end), info in ranges.items():
        host, port = info["primary"][:2]
        owners.setdefault((host, int(port)), []).extend(slot_tags(start, end))
        covered += end - start + 1
    if covered != SLOTS:
        raise StoreUnavailable(
            f"Redis Cluster serves {covered} of {SLOTS} slots now (failing over?); retry shortly"
        )
    calls = []
    for (host, port), tags in owners.items():
        node = client.get_node(host=host, port=port)
        if node is None:
            raise StoreUnavailable(f"Redis Cluster node {host}:{port} is not known yet; retry")
        argv = [head, " ".join(tags), *args]
        calls.append(client.execute_command("EVAL", source, 0, *argv, target_nodes=node))
    try:
        return list(await asyncio.gather(*calls))
    except redis_errors.ResponseError as exc:
        if any(word in str(exc) for word in ("non local key", "MOVED", "ASK", "CLUSTERDOWN")):
            raise StoreUnavailable(
                f"Redis Cluster slots moved while reading an index ({exc}); retry shortly"
            ) from exc
        raise


P = TypeVar("P")


class RedisParts(RemoteStore[P]):
    """What each part of `RedisStore` (its usage, memories and turn locks, bases of the store)
    works on: the store's client and its registered scripts."""

    @abstractmethod
    def _ready(self) -> Any:
        """Give the store's redis client (created on first use)."""

    @abstractmethod
    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run the registered script `name` (a `redis_lua` source) on `keys` and `args`."""


__all__ = [
    "BUCKET_IDLE",
    "BUCKET_MEMBERS",
    "Client",
    "RedisParts",
    "connect",
    "eval_and_wait",
    "on_every_primary",
    "translate",
]
