"""The Lua scripts of `RedisStore`. Each runs atomically on the server, so a turn, a
deletion or a lock step is all or nothing and never interleaves with another client's.

Each script is preceded by its legend (KEYS, ARGV, what it returns), as in redis-py's
`lock.py`; the keys are those listed in `redis` (and `redis_memories`). A memory script
touches the keys of one user only.
"""

from __future__ import annotations

from tenantry.storage.redis_usage import count_lua

LOCK_LOST = "TENANTRY_LOCK_LOST"
"""The error `APPEND` replies with when the turn's lock no longer holds the turn's token."""
KEY_TAKEN = "TENANTRY_KEY_TAKEN"
"""The error `APPEND` replies with when the user holds a live record of the turn's
idempotency key."""

# KEYS[1] - the scope's messages (list)
# KEYS[2] - the scope's session state
# KEYS[3] - the user's sessions (set)
# KEYS[4] - the users (set)
# KEYS[5] - the activity (sorted set)
# KEYS[6] - the scope's turn lock
# KEYS[7] - the turn's idempotency record (JSON, with a TTL), if ARGV[9] is not ''
# KEYS[8] - the user's idempotency records (sorted set "{session}:{key}" -> expiry)
# KEYS[9], KEYS[10], KEYS[11] - the user's usage hash of the day, the day's top set, the
#   days index (`redis_usage`)
# ARGV[1] - the time of the write: the scope's score in KEYS[5]
# ARGV[2] - max_messages, 0 for no cap
# ARGV[3] - "1" to set the state to ARGV[4], "0" to keep it
# ARGV[4] - the state's JSON text
# ARGV[5] - the session id, added to KEYS[3]
# ARGV[6] - the user id, added to KEYS[4]
# ARGV[7] - the scope's member in KEYS[5], "{user}:{session}"
# ARGV[8] - the turn lock's token, or '' for a write outside a turn (no fence)
# ARGV[9] - the idempotency record's JSON (its expires_at a number), or '' for none
# ARGV[10] - the record's time to live, in milliseconds
# ARGV[11] - the record's expiry: its score in KEYS[8]
# ARGV[12] - the record's member in KEYS[8]
# ARGV[13] - k: 0 for a turn without usage, else the number of usage arguments that follow
# ARGV[14] ... ARGV[13 + k] - the turn's usage (`redis_usage.usage_args`)
# ARGV[14 + k], ARGV[15 + k] ... - the new messages' JSON, oldest first
# return 1, or the error LOCK_LOST (and nothing written) if KEYS[6] does not hold ARGV[8],
#   or the error KEY_TAKEN (and nothing written) if KEYS[7] holds a record not expired at ARGV[1]
APPEND = f"""
if ARGV[8] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[8] then
    return redis.error_reply('{LOCK_LOST}')
end
if ARGV[9] ~= '' then
    local held = redis.call('GET', KEYS[7])
    if held and cjson.decode(held).expires_at > tonumber(ARGV[1]) then
        return redis.error_reply('{KEY_TAKEN}')
    end
    redis.call('SET', KEYS[7], ARGV[9], 'PX', ARGV[10])
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', ARGV[1])
    redis.call('ZADD', KEYS[8], ARGV[11], ARGV[12])
    if redis.call('PTTL', KEYS[8]) < tonumber(ARGV[10]) then
        redis.call('PEXPIRE', KEYS[8], ARGV[10])
    end
end
local n = #ARGV
local first = 14 + tonumber(ARGV[13])
if first > 14 then
{count_lua(("KEYS[9]", "KEYS[10]", "KEYS[11]"), "14", "ARGV[6]")}end
for i = first, n, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, n)))
end
local cap = tonumber(ARGV[2])
if cap > 0 and n >= first then
    redis.call('LTRIM', KEYS[1], -cap, -1)
end
if ARGV[3] == '1' then
    redis.call('SET', KEYS[2], ARGV[4])
end
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('SADD', KEYS[4], ARGV[6])
redis.call('ZADD', KEYS[5], ARGV[1], ARGV[7])
return 1
"""

# KEYS[1] - the users (set)
# KEYS[2] - the activity (sorted set)
# KEYS[4n-1] ... KEYS[4n+2] - for the n-th scope (n = 1, 2 ...): its messages, its session
#   state, its summary, its user's sessions (set)
# ARGV[1] - the cutoff: delete only scopes last active before it; '' deletes unconditionally
# ARGV[3n-1], ARGV[3n], ARGV[3n+1] - for the n-th scope: its user id, its session id, its
#   member in KEYS[2]
# return how many scopes were deleted
DELETE = """
local deleted = 0
for i = 0, (#KEYS - 2) / 4 - 1 do
    local k, a = 3 + i * 4, 2 + i * 3
    local score = redis.call('ZSCORE', KEYS[2], ARGV[a + 2])
    if ARGV[1] == '' or (score and tonumber(score) < tonumber(ARGV[1])) then
        redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2])
        redis.call('SREM', KEYS[k + 3], ARGV[a + 1])
        if redis.call('SCARD', KEYS[k + 3]) == 0 then
            redis.call('SREM', KEYS[1], ARGV[a])
        end
        deleted = deleted + redis.call('ZREM', KEYS[2], ARGV[a + 2])
    end
end
return deleted
"""

# KEYS[1] - the scope's messages (list)
# KEYS[2] - the scope's session state
# KEYS[3] - the scope's summary
# ARGV[1] - the summary's JSON text
# return 1 if the scope exists (it has messages or a state) and got the summary, otherwise 0
SET_SUMMARY = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
    return 0
end
redis.call('SET', KEYS[3], ARGV[1])
return 1
"""

# KEYS[1] - a scope's turn lock
# ARGV[1] - the holder's token
# ARGV[2] - the new time to live, in milliseconds
# return 1 if the lock still held the token and got the new time to live, otherwise 0
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] - a scope's turn lock
# ARGV[1] - the holder's token
# return 1 if the lock held the token and was deleted, otherwise 0
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


# The memory scripts. For each: KEYS[1] - the user's memories (hash id -> JSON), KEYS[2] - the
# user's order (sorted set id -> stamp, the user's count of memory writes at its last write),
# KEYS[3] - the user's terms (hash id -> "id stamp token token ..."), KEYS[4] - the user's
# vectors (hash id -> float32 bytes).

# ARGV[1] - the memory's id
# ARGV[2] - the memory's JSON
# ARGV[3] - its tokens, space-separated
# ARGV[4] - its vector, or '' for none
# ARGV[5] - max_memories, 0 for no cap
# return the memory's stamp (1: the user had no memory)
ADD_MEMORY = """
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local stamp = 1
if top[2] then
    stamp = tonumber(top[2]) + 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[1] .. ' ' .. stamp .. ' ' .. ARGV[3])
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
end
redis.call('ZADD', KEYS[2], stamp, ARGV[1])
local cap = tonumber(ARGV[5])
local over = cap > 0 and redis.call('ZCARD', KEYS[2]) - cap or 0
while over > 0 do
    local oldest = redis.call('ZRANGE', KEYS[2], 0, math.min(over, 1000) - 1)
    redis.call('HDEL', KEYS[1], unpack(oldest))
    redis.call('HDEL', KEYS[3], unpack(oldest))
    redis.call('HDEL', KEYS[4], unpack(oldest))
    redis.call('ZREM', KEYS[2], unpack(oldest))
    over = over - #oldest
end
return stamp
"""

# ARGV[1] - the memory's id
# ARGV[2] - the expected version, or '' for any
# ARGV[3] - the new text
# ARGV[4] - the time of the update, as text
# ARGV[5] - the new tokens, space-separated
# ARGV[6] - the new vector, or '' for none (the old one is dropped)
# return {1, the new JSON}; {0} if the user has no such memory; {-1, the current version} if
#   ARGV[2] is stale (nothing written)
UPDATE_MEMORY = """
local doc = redis.call('HGET', KEYS[1], ARGV[1])
if not doc then
    return {0}
end
local memory = cjson.decode(doc)
if ARGV[2] ~= '' and memory.version ~= tonumber(ARGV[2]) then
    return {-1, memory.version}
end
memory.text = ARGV[3]
memory.updated_at = ARGV[4]
memory.version = memory.version + 1
doc = cjson.encode(memory)
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local stamp = tonumber(top[2]) + 1
redis.call('HSET', KEYS[1], ARGV[1], doc)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[1] .. ' ' .. stamp .. ' ' .. ARGV[5])
if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
else
    redis.call('HDEL', KEYS[4], ARGV[1])
end
redis.call('ZADD', KEYS[2], stamp, ARGV[1])
return {1, doc}
"""

# ARGV[1] - the memory's id
# return 1 if the user had the memory (now deleted), otherwise 0
DELETE_MEMORY = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
    return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# return how many memories the user had (all now deleted)
CLEAR_MEMORIES = """
local count = redis.call('ZCARD', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return count
"""

# ARGV[1] - the rank of the last one wanted (how many - 1), -1 for all
# return {ids, their JSON}, most recently updated first
LIST_MEMORIES = """
local ids = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]))
if #ids == 0 then
    return {ids, {}}
end
return {ids, redis.call('HMGET', KEYS[1], unpack(ids))}
"""

# return the user's terms (KEYS[3]'s values), joined by newlines into one reply: one string to
#   parse instead of one per memory (which, parsed in Python, cost more than the ranking)
MEMORY_TERMS = """
return table.concat(redis.call('HVALS', KEYS[3]), '\\n')
"""

MEMORY_SCRIPTS = {
    "memory_terms": MEMORY_TERMS,
    "add_memory": ADD_MEMORY,
    "update_memory": UPDATE_MEMORY,
    "delete_memory": DELETE_MEMORY,
    "clear_memories": CLEAR_MEMORIES,
    "list_memories": LIST_MEMORIES,
}


__all__ = [
    "ADD_MEMORY",
    "APPEND",
    "CLEAR_MEMORIES",
    "DELETE",
    "DELETE_MEMORY",
    "KEY_TAKEN",
    "LIST_MEMORIES",
    "LOCK_LOST",
    "MEMORY_SCRIPTS",
    "MEMORY_TERMS",
    "RELEASE",
    "RENEW",
    "SET_SUMMARY",
    "UPDATE_MEMORY",
]
