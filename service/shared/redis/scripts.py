"""The Lua scripts that make Redis the judge of ownership: only the lease holder appends.

Keys of a session ``<id>``: ``rsv:s:<id>`` (its record, a hash), ``rsv:s:<id>:log`` (its event
stream, entry ids ``0-<event id>``: explicit and contiguous, so a gap is visible),
``rsv:s:<id>:lease`` (the holder's instance id, with a time to live) and ``rsv:s:<id>:text``
(its final transcript, out of the record so that a final appends to it instead of writing it all).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from service.settings import Settings

MAX_SESSIONS_PER_CALL = 256  # the APPEND and RENEW scripts take at most this many sessions a call
T = TypeVar("T")


def per_call(sessions: list[T]) -> Iterator[list[T]]:
    """``sessions`` in runs of at most ``MAX_SESSIONS_PER_CALL``: one script call each."""
    for start in range(0, len(sessions), MAX_SESSIONS_PER_CALL):
        yield sessions[start : start + MAX_SESSIONS_PER_CALL]


# Every session this process publishes, in one call. KEYS: per session its lease, stream,
# record and final transcript. ARGV: holder, maxlen, ttl_s, lease_ms, then per session: first
# event id, the number of record fields, the number of events, the transcript's change (mode: ''
# none, '=' whole, '+' appended; the length Redis must hold before an append; the data), the
# fields' name/value pairs (the whole record starts with token_hash), the events' name/data pairs.
# Returns one status per session: {"OK"}, {"FENCED", holder}, {"MISSING"} (the record is gone:
# send it whole), {"TEXT"} (the transcript is not what was written: send it whole) or
# {"CONFLICT", last id} (the stream goes past every event sent: not ours). Events already in the
# stream (an earlier call went through but its answer was lost) are skipped, so a retry is safe.
# Nothing is written for a session whose status is not OK.
APPEND = """
local holder, maxlen, ttl, lease_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local replies = {}
local a = 5
for s = 0, #KEYS / 4 - 1 do
  local lease, stream, record, text = KEYS[4 * s + 1], KEYS[4 * s + 2], KEYS[4 * s + 3], KEYS[4 * s + 4]
  local first, nfields, nevents = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local tmode, tat, tdata = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local fields = a + 6
  local events = fields + 2 * nfields
  a = events + 2 * nevents
  local reply = nil
  local current = redis.call('GET', lease)
  if current ~= holder then
    local recorded = redis.call('HGET', record, 'holder')
    if current or (recorded and recorded ~= holder) then
      reply = {'FENCED', current or recorded}
    end
  end
  local existed = not reply and redis.call('EXISTS', record) == 1
  if not reply and not existed and ARGV[fields] ~= 'token_hash' then
    reply = {'MISSING'}
  end
  if not reply and tmode == '+' and redis.call('STRLEN', text) ~= tonumber(tat) then
    reply = {'TEXT'}
  end
  local skip, last = 0, 0
  if not reply then
    -- not fenced: every event in the stream is this holder's. Ids it sends again were written
    -- by an earlier call whose answer it never got (a timeout, a reset): not written twice.
    last = tonumber(redis.call('HGET', record, 'last_id') or '0')
    if last >= first + nevents then
      reply = {'CONFLICT', tostring(last)}
    elseif last >= first then
      skip = last - first + 1
    end
  end
  if not reply then
    if current ~= holder then
      redis.call('SET', lease, holder, 'PX', lease_ms)
    end
    local id = first + skip
    for i = events + 2 * skip, a - 1, 2 do
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '0-' .. id, 'n', ARGV[i], 'd', ARGV[i + 1])
      id = id + 1
    end
    -- the record's changes, its last id and its holder in one command
    local hset = {'HSET', record, 'holder', holder}
    for i = fields, events - 1 do
      hset[#hset + 1] = ARGV[i]
    end
    if id > first + skip then
      hset[#hset + 1] = 'last_id'
      hset[#hset + 1] = id - 1
    end
    redis.call(unpack(hset))
    if tmode == '=' then
      redis.call('SET', text, tdata, 'EX', ttl)
    elseif tmode == '+' then
      redis.call('APPEND', text, tdata)  -- it exists (its length was checked), and keeps its lifetime
    end
    -- a key made by this call gets its lifetime; the renewer extends every owned session's
    if not existed then
      redis.call('EXPIRE', record, ttl)
    end
    if last == 0 and id > first + skip then
      redis.call('EXPIRE', stream, ttl)
    end
    reply = {'OK'}
  end
  replies[#replies + 1] = reply
end
return replies
"""

# Every owned session's lease, in one call. KEYS: per session its lease, stream, record, final
# transcript and its key's live set. ARGV: holder, lease_ms, ttl_s, the tickets' new lapse time
# (ms), then per session its ticket ('' for none). Returns per session 1: renewed, 0: another
# holds it.
RENEW = """
local holder, lease_ms, ttl, lapse = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local replies = {}
for s = 0, #KEYS / 5 - 1 do
  local lease, stream, record = KEYS[5 * s + 1], KEYS[5 * s + 2], KEYS[5 * s + 3]
  local text, live = KEYS[5 * s + 4], KEYS[5 * s + 5]
  local ticket = ARGV[5 + s]
  local current = redis.call('GET', lease)
  if current == holder or (not current and redis.call('HGET', record, 'holder') == holder) then
    redis.call('SET', lease, holder, 'PX', lease_ms)
    redis.call('EXPIRE', stream, ttl)
    redis.call('EXPIRE', record, ttl)
    redis.call('EXPIRE', text, ttl)
    if ticket ~= '' then
      redis.call('ZADD', live, 'XX', lapse, ticket)
    end
    replies[#replies + 1] = 1
  else
    replies[#replies + 1] = 0
  end
end
return replies
"""

# KEYS: a lease (or a key like one). ARGV: its holder. Let go only of what we hold.
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


def text_key(session_id: str) -> str:
    """The session's final transcript (the record's ``final_text``, appended to as it grows)."""
    return f"rsv:s:{session_id}:text"


def lease_key(session_id: str) -> str:
    return f"rsv:s:{session_id}:lease"


def live_key(key_id: str) -> str:
    """An API key's live sessions, by ticket (admission counts them, the owner renews them)."""
    return f"rsv:k:{key_id}:live"


def made_key(key_id: str) -> str:
    """An API key's session creations in the last minute."""
    return f"rsv:k:{key_id}:made"


def spent_key(token_id: str) -> str:
    """A single-use token's mark once spent (the attempt's own value, lapsing with the token)."""
    return f"rsv:t:{token_id}"


def control_key(instance: str) -> str:
    return f"rsv:i:{instance}:ctl"


def session_ttl_s(settings: Settings) -> float:
    """How long a live session's keys outlive their last renewal or write: past its idle
    timeout, reconnect grace and retention, and never under three leases."""
    return max(
        settings.idle_session_timeout_s + settings.audio_reconnect_grace_s + settings.session_retention_s,
        settings.redis_lease_s * 3,
    )


def now_ms() -> int:
    """Wall-clock milliseconds, as the scripts' lapse times and the tickets count them."""
    return int(time.time() * 1000)
