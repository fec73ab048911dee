"""The Lua scripts that make Redis the judge of ownership: only the lease holder appends.

Keys of a session ``<id>``: ``rsv:s:<id>`` (its record, a hash), ``rsv:s:<id>:log`` (its event
stream, entry ids ``0-<event id>``: explicit and contiguous, so a gap is visible) and
``rsv:s:<id>:lease`` (the holder's instance id, with a time to live).
"""

from __future__ import annotations

# KEYS: lease, stream, record. ARGV: holder, first event id, maxlen, ttl_s, lease_ms, number of
# record fields, then field/value pairs, then name/data pairs of the events.
# Returns {"OK"}, {"FENCED", holder}, {"MISSING"} (the record is gone: send it whole) or
# {"CONFLICT", last id} (someone else appended: we are not the owner any more).
APPEND = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  local recorded = redis.call('HGET', KEYS[3], 'holder')
  if holder or (recorded and recorded ~= ARGV[1]) then
    return {'FENCED', holder or recorded}
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[5])
end
local nfields = tonumber(ARGV[6])
if redis.call('EXISTS', KEYS[3]) == 0 and ARGV[7] ~= 'token_hash' then
  return {'MISSING'}
end
local first = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[3], 'last_id') or '0')
if last >= first then
  return {'CONFLICT', tostring(last)}
end
local i = 7
for _ = 1, nfields do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local id = first
while i < #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. id, 'n', ARGV[i], 'd', ARGV[i + 1])
  id = id + 1
  i = i + 2
end
if id > first then
  redis.call('HSET', KEYS[3], 'last_id', id - 1)
end
redis.call('HSET', KEYS[3], 'holder', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {'OK'}
"""

# KEYS: lease, stream, record, the key's live set. ARGV: holder, lease_ms, ttl_s, ticket, the
# ticket's new lapse time (ms). 1: renewed, 0: another holds it.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or (not holder and redis.call('HGET', KEYS[3], 'holder') == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  if ARGV[4] ~= '' then
    redis.call('ZADD', KEYS[4], 'XX', ARGV[5], ARGV[4])
  end
  return 1
end
return 0
"""

# KEYS: lease. ARGV: holder. Let go only of a lease we hold.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: the key's live set, its creations in the last minute. ARGV: now (ms), ticket,
# max live (0: none), per minute (0: none), live ttl (ms), window (ms).
# Returns {0} admitted, {1, retry_s} at the live limit, {2, retry_s} at the per-minute limit.
ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[6]))
local max_live = tonumber(ARGV[3])
local per_minute = tonumber(ARGV[4])
if max_live > 0 and redis.call('ZCARD', KEYS[1]) >= max_live then
  return {1, 5}
end
if per_minute > 0 and redis.call('ZCARD', KEYS[2]) >= per_minute then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, math.max(1, math.ceil((tonumber(oldest[2]) + tonumber(ARGV[6]) - now) / 1000))}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if per_minute > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return {0}
"""


def record_key(session_id: str) -> str:
    return f"rsv:s:{session_id}"


def log_key(session_id: str) -> str:
    return f"rsv:s:{session_id}:log"


def lease_key(session_id: str) -> str:
    return f"rsv:s:{session_id}:lease"


def control_key(instance: str) -> str:
    return f"rsv:i:{instance}:ctl"
