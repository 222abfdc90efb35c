"""The Lua scripts of ``redis_store.py``: each change to a job is one atomic step in Redis,
whichever instance or job worker makes it.

Keys (``<id>`` is the job id):

- ``fs:job:<id>`` hash: the job record (state, output, total, times, error, client, bucket,
  bytes of its items so far); ``fs:job:<id>:items`` list: its items as stored JSON;
- ``fs:job:<id>:done`` set of kept item indexes, ``fs:item:<id>:<i>`` an item's bytes;
- ``fs:jobs:active`` zset of queued and running jobs (what the limits count);
  ``fs:jobs:recent`` and ``fs:jobs:client:<client>`` zsets by creation time (listings);
- ``fs:res:<id>`` a finished result, written in chunks under ``fs:res:<id>:<token>`` and
  renamed into place when complete; ``fs:res:used``/``:size``/``:exp`` count the bytes of all
  results against ``job_results_quota_bytes`` (expired ones are reclaimed as new ones are
  written);
- ``fs:owner-key`` the secret that signs owner tokens.
"""

from __future__ import annotations

# Shared by the scripts that write results: forget results whose time is up (their keys expire
# by themselves), so their bytes count no longer. KEYS[1..3] = used, size, exp.
_RECLAIM = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function reclaim(used, size, exp)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now_ms())) do
    redis.call('DECRBY', used, tonumber(redis.call('HGET', size, member) or '0'))
    redis.call('HDEL', size, member)
    redis.call('ZREM', exp, member)
  end
end
"""

# KEYS: job, items, active, recent, used, size, exp, client index (or a dummy)
# ARGV: id, created, max_active, max_bucket (-1: none), quota (-1: none), reserve, bucket,
#       client, output, total, the number of items, their JSON, the listing's length, the paper
CREATE = (
    _RECLAIM
    + """
local active = redis.call('ZCARD', KEYS[3])
if active >= tonumber(ARGV[3]) then return {'busy', active} end
if tonumber(ARGV[4]) >= 0 and ARGV[7] ~= '' then
  local mine = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local f = redis.call('HMGET', 'fs:job:' .. id, 'bucket', 'client')
    if f[1] == ARGV[7] or (ARGV[8] ~= '' and f[2] == ARGV[8]) then mine = mine + 1 end
  end
  if mine >= tonumber(ARGV[4]) then return {'client', mine} end
end
if tonumber(ARGV[5]) >= 0 then
  reclaim(KEYS[5], KEYS[6], KEYS[7])
  local used = tonumber(redis.call('GET', KEYS[5]) or '0')
  if used + (active + 1) * tonumber(ARGV[6]) > tonumber(ARGV[5]) then
    local first = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
    local wait = 0
    if first[2] then wait = (tonumber(first[2]) - now_ms()) / 1000 end
    return {'full', used, tostring(wait), active}
  end
end
local n = tonumber(ARGV[11])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'queued', 'output', ARGV[9],
  'total', ARGV[10], 'created', ARGV[2], 'client', ARGV[8], 'bucket', ARGV[7], 'bytes', 0,
  'paper', ARGV[13 + n])
if n > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 12, 11 + n)) end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[12 + n]))
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[8], ARGV[2], ARGV[1])
end
return {'ok'}
"""
)

# KEYS: job. ARGV: now. The first item to start makes a queued job running.
START = """
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started', ARGV[1])
  return 1
end
return 0
"""

# KEYS: job, item, done. ARGV: index, data, ttl seconds, max bytes of the job's items.
# Keep an item's bytes if the job is still active: the number of items kept, -1 if the job
# ended meanwhile, -2 if the job's items passed their byte limit.
PUT_ITEM = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return -1 end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', string.len(ARGV[2]))
  if bytes > tonumber(ARGV[4]) then return -2 end
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return redis.call('SCARD', KEYS[3])
"""

# KEYS: job, items, done, active. ARGV: state, now, expires, ttl seconds, error, item prefix.
# End an active job (failed or cancelled): its item bytes go, the record stays until it
# expires. Allowed when Redis is out of memory: it frees more than it writes, and a job that
# failed for want of memory must be able to say so.
END = """#!lua flags=allow-oom
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
for i = 0, total - 1 do redis.call('UNLINK', ARGV[6] .. i) end
local done = redis.call('SCARD', KEYS[3])
redis.call('UNLINK', KEYS[3])
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished', ARGV[2], 'expires', ARGV[3],
  'done', done)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
redis.call('ZREM', KEYS[4], redis.call('HGET', KEYS[1], 'id'))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: tmp, used, size, exp. ARGV: member, chunk, cap, ttl ms.
# Append a chunk to a result being written, within the byte budget of all results.
APPEND = (
    _RECLAIM
    + """
reclaim(KEYS[2], KEYS[3], KEYS[4])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = string.len(ARGV[2])
if used + n > tonumber(ARGV[3]) then return -1 end
redis.call('APPEND', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], n)
redis.call('HINCRBY', KEYS[3], ARGV[1], n)
redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[4]), ARGV[1])
return used + n
"""
)

# KEYS: job, items, done, active, tmp, final, used, size, exp.
# ARGV: id, member, now, expires, ttl seconds, size, item prefix.
# Put a complete result in place and end the job done, if it is still active; else drop it.
COMPLETE = (
    _RECLAIM
    + """
local function drop(member, key)
  redis.call('DECRBY', KEYS[7], tonumber(redis.call('HGET', KEYS[8], member) or '0'))
  redis.call('HDEL', KEYS[8], member)
  redis.call('ZREM', KEYS[9], member)
  redis.call('UNLINK', key)
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then
  drop(ARGV[2], KEYS[5])
  return 0
end
if redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
local ttl = tonumber(ARGV[5])
redis.call('RENAME', KEYS[5], KEYS[6])
redis.call('EXPIRE', KEYS[6], ttl)
redis.call('HSET', KEYS[8], ARGV[1], redis.call('HGET', KEYS[8], ARGV[2]) or '0')
redis.call('HDEL', KEYS[8], ARGV[2])
redis.call('ZREM', KEYS[9], ARGV[2])
redis.call('ZADD', KEYS[9], now_ms() + ttl * 1000, ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
redis.call('HSET', KEYS[1], 'state', 'done', 'finished', ARGV[3], 'expires', ARGV[4],
  'done', total, 'result_bytes', ARGV[6])
for i = 0, total - 1 do redis.call('UNLINK', ARGV[7] .. i) end
redis.call('UNLINK', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""
)

# KEYS: used, size, exp, key. ARGV: member. Forget a result (or a partial one) and its bytes;
# allowed when Redis is out of memory, as it only frees.
DROP = """#!lua flags=allow-oom
redis.call('DECRBY', KEYS[1], tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('UNLINK', KEYS[4])
"""
