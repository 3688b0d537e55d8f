"""`RedisUsage`: the usage counters, budgets and shared rate limit of `RedisStore`.

Keys (the user id percent-encoded, one segment, as in every key of the store; a day is
YYYY-MM-DD; on Redis Cluster the user is the hash tag of the user's keys and the three
indexes have one bucket per slot, `...:{TAG}`, a user's in the user's slot — `redis_keys`):

    {prefix}:usage:{user}:{day}   hash  the user's counts of that UTC day (`USAGE_COUNTS`),
                                        and estimated = 1 once any part was
    {prefix}:usagetop:{day}       zset  user id -> total tokens of that day (`top_usage`)
    {prefix}:usagedays            zset  day -> its ordinal: the days that have usage, for
                                        reads of a period, pruning and clear_all
    {prefix}:budget:{user}        hash  the user's budget override (a missing limit is none)
    {prefix}:budgetusers          set   the users with an override, for clear_all
    {prefix}:rate:{user}          hash  the user's rate-limit bucket (tokens, updated),
                                        expiring once it would be full again (a minute)

A turn's append script (`redis_lua.APPEND`) adds the turn's usage to the first three in
the same script as the messages (`COUNT_LUA`, after the fence, so a refused turn counts
nothing); `add_usage` runs the same Lua alone. A read of a period first lists the period's
days in `usagedays`, then reads the user's hashes of those days in one pipeline; an
admission reads the month's hashes and the budget in one round trip. `top_usage` sums the
period's day sets (ZUNION) and then reads the top users' hashes. The rate limit is one
small script per request, so replicas take turns on the bucket.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, TypeVar

from tenantry.storage.redis_client import BUCKET_MEMBERS, RedisParts, on_every_primary
from tenantry.storage.redis_keys import KeyLayout
from tenantry.storage.usage import admission_of, month_start
from tenantry.types import BUDGET_LIMITS, USAGE_COUNTS, Admission, Budget, Usage, UsageDay

P = TypeVar("P")

USAGE_ARGS = 3 + len(USAGE_COUNTS) + 1
"""How many ARGV a usage takes in `COUNT_LUA`: day ordinal, day, total tokens, the counts,
estimated."""


def count_lua(keys: tuple[str, str, str], first: str, user: str) -> str:
    """Give the Lua that adds a usage to the keys `keys` (the user's day hash, the day's top
    set, the days index) from the ARGV starting at index `first` (a Lua expression), for the
    user id in the Lua expression `user`."""
    day, top, days = keys
    incr = "\n".join(
        f"redis.call('HINCRBY', {day}, '{name}', ARGV[{first} + {3 + i}])"
        for i, name in enumerate(USAGE_COUNTS)
    )
    return f"""{incr}
if ARGV[{first} + {3 + len(USAGE_COUNTS)}] == '1' then
    redis.call('HSET', {day}, 'estimated', '1')
end
redis.call('ZINCRBY', {top}, ARGV[{first} + 2], {user})
redis.call('ZADD', {days}, ARGV[{first}], ARGV[{first} + 1])
"""


# KEYS[1] - the user's usage hash of the day
# KEYS[2] - the day's top set
# KEYS[3] - the days index
# ARGV[1] - the user id
# ARGV[2] ... - the usage (USAGE_ARGS of them, see `usage_args`)
ADD_USAGE = count_lua(("KEYS[1]", "KEYS[2]", "KEYS[3]"), "2", "ARGV[1]") + "return 1\n"

# KEYS[1] - the user's bucket
# ARGV[1] - requests per minute (the bucket's size)
# ARGV[2] - the time now, seconds since the epoch
# return "0" if a request was taken, otherwise the seconds until one can be (as text)
RATE_LIMIT_HIT = """
local cap = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local rate = cap / 60
local tokens, updated = cap, now
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
if bucket[1] then
    tokens = math.min(cap, tonumber(bucket[1]) + math.max(now - tonumber(bucket[2]), 0) * rate)
    updated = math.max(tonumber(bucket[2]), now)
end
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
    'updated', string.format('%.17g', updated))
redis.call('PEXPIRE', KEYS[1], 61000)
return string.format('%.17g', wait)
"""

USAGE_SCRIPTS = {"add_usage": ADD_USAGE, "rate_limit_hit": RATE_LIMIT_HIT}

# Redis Cluster, one call per primary over its buckets (see `redis_lua`'s index scripts):
# ARGV[1] - the days indexes' head, "{prefix}:usagedays:"
# ARGV[2] - the tags of the slots the node serves, separated by spaces
# ARGV[3], ARGV[4] - the first and last day's ordinal
# ARGV[5] - the day sets' head, "{prefix}:usagetop:"
# return {tag, day, user, total tokens, ...} for every user's usage on those days
BUCKET_USAGE = """#!lua flags=no-writes,allow-cross-slot-keys
local out = {}
for tag in string.gmatch(ARGV[2], '%S+') do
    local days = redis.call('ZRANGEBYSCORE', ARGV[1] .. '{' .. tag .. '}', ARGV[3], ARGV[4])
    for _, day in ipairs(days) do
        local top = redis.call('ZRANGE', ARGV[5] .. day .. ':{' .. tag .. '}', 0, -1, 'WITHSCORES')
        for j = 1, #top, 2 do
            out[#out + 1] = tag
            out[#out + 1] = day
            out[#out + 1] = top[j]
            out[#out + 1] = top[j + 1]
        end
    end
end
return out
"""


def usage_args(day: date, usage: Usage) -> list[Any]:
    """Give the ARGV of a usage for `count_lua`."""
    counts = [getattr(usage, name) for name in USAGE_COUNTS]
    return [day.toordinal(), day.isoformat(), usage.total_tokens, *counts, int(usage.estimated)]


def _usage(fields: dict[Any, Any]) -> Usage:
    values = {_text(k): int(v) for k, v in fields.items()}
    counts = {name: values.get(name, 0) for name in USAGE_COUNTS}
    return Usage(**counts, estimated=bool(values.get("estimated", 0)))


def _budget(fields: dict[Any, Any]) -> Budget | None:
    if not fields:
        return None
    values = {_text(k): _text(v) for k, v in fields.items()}
    return Budget(*(int(values[n]) if values.get(n) else None for n in BUDGET_LIMITS))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisUsage(RedisParts[P]):
    """The usage primitives of `RedisStore`, on its client and scripts."""

    prefix: str
    layout: KeyLayout

    @abstractmethod
    def _user_key(self, kind: str, user_id: str) -> str:
        """Give the key of kind `kind` of the user (`{prefix}:{kind}:{user}`)."""

    @property
    def shares_rate_limit(self) -> bool:
        return True

    def _usage_keys(self, user_id: str, day: date) -> list[str]:
        """Give the keys a usage of the user's `day` writes (`count_lua`'s order)."""
        return [
            f"{self._user_key('usage', user_id)}:{day.isoformat()}",
            self.layout.index_key(f"usagetop:{day.isoformat()}", user_id),
            self.layout.index_key("usagedays", user_id),
        ]

    async def _add_usage(self, user_id: str, day: date, usage: Usage) -> None:
        keys, args = self._usage_keys(user_id, day), [user_id, *usage_args(day, usage)]
        await self._run(lambda: self._script("add_usage", keys, args))

    async def _days_between(self, start: date, end: date, user_id: str) -> list[date]:
        """Give the days from `start` to `end` on which anyone listed in the user's bucket of
        the days index had usage (on one server: anyone), oldest first."""
        key = self.layout.index_key("usagedays", user_id)
        found = await self._run(
            lambda: self._ready().zrangebyscore(key, start.toordinal(), end.toordinal())
        )
        return [date.fromisoformat(_text(day)) for day in found]

    async def _hashes(self, keys: Sequence[str]) -> list[dict[Any, Any]]:
        async def read() -> list[dict[Any, Any]]:
            async with self._ready().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                return list(await pipe.execute())

        return await self._run(read) if keys else []

    async def _usage_days(self, user_id: str, start: date, end: date) -> list[UsageDay]:
        days = await self._days_between(start, end, user_id)
        hashes = await self._hashes([self._usage_keys(user_id, day)[0] for day in days])
        return [UsageDay(day, _usage(h)) for day, h in zip(days, hashes, strict=True) if h]

    def _admission_keys(self, user_id: str, day: date) -> list[str]:
        """Give the keys an admission of `day` reads: the user's days of the month so far,
        then its budget (`_admission_of` reads their hashes)."""
        month = [month_start(day) + timedelta(days=i) for i in range(day.day)]
        return [
            *(self._usage_keys(user_id, one)[0] for one in month),
            self._user_key("budget", user_id),
        ]

    @staticmethod
    def _admission_of(hashes: Sequence[dict[Any, Any]], day: date) -> Admission:
        """Give the admission of `day` from the hashes of `_admission_keys`, in order."""
        *days, budget = hashes
        month = (month_start(day) + timedelta(days=i) for i in range(day.day))
        found = [UsageDay(one, _usage(h)) for one, h in zip(month, days, strict=True) if h]
        return admission_of(found, day, _budget(budget))

    async def _read_admission(self, user_id: str, day: date) -> Admission:
        return self._admission_of(await self._hashes(self._admission_keys(user_id, day)), day)

    async def _top_usage(self, start: date, end: date, limit: int) -> list[tuple[str, Usage]]:
        if self.layout.cluster:
            return await self._cluster_top_usage(start, end, limit)
        days = await self._days_between(start, end, "")
        if not days:
            return []
        tops = [f"{self.prefix}:usagetop:{day.isoformat()}" for day in days]
        ranked = await self._run(lambda: self._ready().zunion(tops, withscores=True))
        users = sorted(((-score, _text(user)) for user, score in ranked))[:limit]
        keys = [self._usage_keys(user, day)[0] for _, user in users for day in days]
        hashes = iter(await self._hashes(keys))
        result = []
        for _, user in users:
            total = Usage()
            for _day in days:
                fields = next(hashes)
                if fields:
                    total = total + _usage(fields)
            result.append((user, total))
        return result

    async def _cluster_usage(self, first: float, last: float) -> list[tuple[str, str, float]]:
        """Give (user, day, total tokens) of every user's usage on the days whose ordinals
        are from `first` to `last`, from every bucket (Redis Cluster)."""
        args = [self.layout.bucket_head("usagedays")]
        rest = [first, last, self.layout.bucket_head("usagetop")]
        client = self._ready()
        replies = await self._run(lambda: on_every_primary(client, BUCKET_USAGE, args[0], rest))
        found = []
        for reply in replies:
            for i in range(0, len(reply), 4):
                found.append((_text(reply[i + 2]), _text(reply[i + 1]), float(reply[i + 3])))
        return found

    async def _cluster_top_usage(
        self, start: date, end: date, limit: int
    ) -> list[tuple[str, Usage]]:
        days_of: dict[str, list[str]] = {}
        totals: dict[str, float] = {}
        for user, day, tokens in await self._cluster_usage(start.toordinal(), end.toordinal()):
            days_of.setdefault(user, []).append(day)
            totals[user] = totals.get(user, 0) + tokens
        users = sorted((-total, user) for user, total in totals.items())[:limit]
        keys = [
            f"{self._user_key('usage', user)}:{day}" for _, user in users for day in days_of[user]
        ]
        hashes = iter(await self._hashes(keys))
        result = []
        for _, user in users:
            total = Usage()
            for _day in days_of[user]:
                total = total + _usage(next(hashes))
            result.append((user, total))
        return result

    async def _get_budget(self, user_id: str) -> Budget | None:
        return (await self._budgets([user_id]))[0]

    async def _budgets(self, user_ids: Sequence[str]) -> list[Budget | None]:
        hashes = await self._hashes([self._user_key("budget", user) for user in user_ids])
        return [_budget(fields) for fields in hashes]

    async def _set_budget(self, user_id: str, budget: Budget | None) -> None:
        key = self._user_key("budget", user_id)
        users = self.layout.index_key("budgetusers", user_id)

        async def write() -> None:
            async with self._ready().pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if budget is None:
                    pipe.srem(users, user_id)
                else:
                    limits = budget.to_dict()
                    pipe.hset(key, mapping={n: "" if v is None else v for n, v in limits.items()})
                    pipe.sadd(users, user_id)
                await pipe.execute()

        await self._run(write)

    async def _prune_usage(self, before: date) -> int:
        if self.layout.cluster:
            return await self._cluster_delete_days(before.toordinal() - 1)
        return await self._delete_days(before.toordinal() - 1)

    async def _cluster_delete_days(self, last: float) -> int:
        """`_delete_days` on Redis Cluster: each user's hashes, then each bucket's day sets
        and days index entries (one slot per bucket)."""
        found = await self._cluster_usage(float("-inf"), last)
        client, deleted = self._ready(), 0
        for start in range(0, len(found), 1000):
            batch = found[start : start + 1000]

            async def delete(batch: list[tuple[str, str, float]] = batch) -> int:
                async with client.pipeline(transaction=False) as pipe:
                    for user, day, _ in batch:
                        pipe.delete(f"{self._user_key('usage', user)}:{day}")
                        pipe.delete(self.layout.index_key(f"usagetop:{day}", user))
                        pipe.zrem(self.layout.index_key("usagedays", user), day)
                    return sum(int(r) for r in (await pipe.execute())[::3])

            deleted += await self._run(delete)
        return deleted

    async def _delete_days(self, last: float) -> int:
        """Delete every user's usage of the days up to the ordinal `last`; give how many
        hashes. A turn counted meanwhile on such a day puts it back in the index, so it is
        deleted next time instead of lost from sight."""
        index = f"{self.prefix}:usagedays"

        async def delete() -> int:
            client, deleted = self._ready(), 0
            for day in [_text(one) for one in await client.zrangebyscore(index, "-inf", last)]:
                top = f"{self.prefix}:usagetop:{day}"
                users = await client.zrange(top, 0, -1)
                keys = [f"{self._user_key('usage', _text(user))}:{day}" for user in users]
                for start in range(0, len(keys), 1000):
                    deleted += int(await client.delete(*keys[start : start + 1000]))
                async with client.pipeline(transaction=True) as pipe:
                    pipe.delete(top)
                    pipe.zrem(index, day)
                    await pipe.execute()
            return deleted

        return await self._run(delete)

    async def _forget_usage(self) -> None:
        """Delete every user's usage and budget (clear_all)."""
        if self.layout.cluster:
            await self._cluster_forget_usage()
            return
        await self._delete_days(float("inf"))
        users_key = f"{self.prefix}:budgetusers"

        async def delete() -> None:
            client = self._ready()
            keys = [self._user_key("budget", _text(u)) for u in await client.smembers(users_key)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
            await client.delete(users_key)

        await self._run(delete)

    async def _cluster_forget_usage(self) -> None:
        await self._cluster_delete_days(float("inf"))
        client = self._ready()
        head = self.layout.bucket_head("budgetusers")
        replies = await self._run(lambda: on_every_primary(client, BUCKET_MEMBERS, head, []))
        users = sorted({_text(user) for reply in replies for user in reply})

        async def delete() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for user in users:
                    pipe.delete(self._user_key("budget", user))
                    pipe.srem(self.layout.index_key("budgetusers", user), user)
                await pipe.execute()

        if users:
            await self._run(delete)

    async def _rate_limit_hit(self, user_id: str, per_minute: int, now: float) -> float:
        keys, args = [self._user_key("rate", user_id)], [per_minute, repr(now)]
        wait = await self._run(lambda: self._script("rate_limit_hit", keys, args))
        return float(_text(wait))


__all__ = [
    "ADD_USAGE",
    "RATE_LIMIT_HIT",
    "USAGE_ARGS",
    "USAGE_SCRIPTS",
    "RedisUsage",
    "count_lua",
    "usage_args",
]
