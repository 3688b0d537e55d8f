"""The Lua scripts of `RedisStore`. Each runs atomically on the server, so a turn, a
deletion or a lock step is all or nothing and never interleaves with another client's.

Each script is preceded by its legend (KEYS, ARGV, what it returns), as in redis-py's
`lock.py`; the keys are those listed in `redis`.
"""

from __future__ import annotations

LOCK_LOST = "TENANTRY_LOCK_LOST"
"""The error `APPEND` replies with when the turn's lock no longer holds the turn's token."""

# KEYS[1] - the scope's messages (list)
# KEYS[2] - the scope's session state
# KEYS[3] - the user's sessions (set)
# KEYS[4] - the users (set)
# KEYS[5] - the activity (sorted set)
# KEYS[6] - the scope's turn lock
# ARGV[1] - the time of the write: the scope's score in KEYS[5]
# ARGV[2] - max_messages, 0 for no cap
# ARGV[3] - "1" to set the state to ARGV[4], "0" to keep it
# ARGV[4] - the state's JSON text
# ARGV[5] - the session id, added to KEYS[3]
# ARGV[6] - the user id, added to KEYS[4]
# ARGV[7] - the scope's member in KEYS[5], "{user}:{session}"
# ARGV[8] - the turn lock's token, or '' for a write outside a turn (no fence)
# ARGV[9], ARGV[10] ... - the new messages' JSON, oldest first
# return 1, or the error LOCK_LOST (and nothing written) if KEYS[6] does not hold ARGV[8]
APPEND = f"""
if ARGV[8] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[8] then
    return redis.error_reply('{LOCK_LOST}')
end
local n = #ARGV
for i = 9, n, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, n)))
end
local cap = tonumber(ARGV[2])
if cap > 0 and n >= 9 then
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
# KEYS[3n], KEYS[3n+1], KEYS[3n+2] - for the n-th scope (n = 1, 2 ...): its messages, its
#   session state, its user's sessions (set)
# ARGV[1] - the cutoff: delete only scopes last active before it; '' deletes unconditionally
# ARGV[3n-1], ARGV[3n], ARGV[3n+1] - for the n-th scope: its user id, its session id, its
#   member in KEYS[2]
# return how many scopes were deleted
DELETE = """
local deleted = 0
for i = 0, (#KEYS - 2) / 3 - 1 do
    local k, a = 3 + i * 3, 2 + i * 3
    local score = redis.call('ZSCORE', KEYS[2], ARGV[a + 2])
    if ARGV[1] == '' or (score and tonumber(score) < tonumber(ARGV[1])) then
        redis.call('DEL', KEYS[k], KEYS[k + 1])
        redis.call('SREM', KEYS[k + 2], ARGV[a + 1])
        if redis.call('SCARD', KEYS[k + 2]) == 0 then
            redis.call('SREM', KEYS[1], ARGV[a])
        end
        deleted = deleted + redis.call('ZREM', KEYS[2], ARGV[a + 2])
    end
end
return deleted
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


__all__ = ["APPEND", "DELETE", "LOCK_LOST", "RELEASE", "RENEW"]
