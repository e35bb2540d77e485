"""The Lua scripts: every breaker transition and window update is one of these, run atomically
by the server on its own clock (``TIME``), never the callers'.

A breaker is one hash (``s`` state, ``g`` generation, ``v`` version, ``f`` failures, ``w`` the
failure-rate window as a string of 0/1, ``o`` opened at (server microseconds), ``k`` trial
successes, ``q`` lease sequence, ``r`` reason) and one sorted set of trial leases scored by
their expiry.  Every write bumps ``v``, refreshes both keys' TTL and publishes the new snapshot
on the namespace's channel, in the same script: a change and its announcement cannot part.
A missing hash (never written, expired, or ``FLUSHALL``) is a fresh closed breaker.
"""

from __future__ import annotations

#: KEYS: hash, leases.  ARGV: op, name, channel, failure_threshold, failure_rate (0: count
#: consecutive failures), window_size, minimum_calls, recovery_ms, half_open_max_calls,
#: success_threshold, lease_ms, ttl_ms, then the op's own arguments:
#:   record: failed (0/1), lease ('' for a call admitted closed), reason, pending successes
#:           and the generation they were counted in (dropped if it is not the current one)
#:   flush: pending successes, their generation;  release: lease;  force: state, reason
#:   admit, read, reset: -
#: Returns {state, generation, version, failures, calls, retry_after_ms, trials, reason, lease}.
BREAKER = r"""
local hkey, lkey = KEYS[1], KEYS[2]
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local threshold = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local wsize = tonumber(ARGV[6])
local mincalls = tonumber(ARGV[7])
local recovery = tonumber(ARGV[8]) * 1000
local maxcalls = tonumber(ARGV[9])
local needed = tonumber(ARGV[10])
local lease_us = tonumber(ARGV[11]) * 1000
local ttl = ARGV[12]

local function int(x) return string.format('%.0f', x) end

local raw = redis.call('HGETALL', hkey)
local b = {}
for i = 1, #raw, 2 do b[raw[i]] = raw[i + 1] end
if b.s == nil then
  -- Generation 0 until the first move: a fresh breaker read twice must keep its generation,
  -- or successes counted against the first read would be dropped by the next script.
  b = {s = 'closed', g = 0, v = now, f = 0, w = '', o = 0, k = 0, q = 0, r = ''}
else
  b.g = tonumber(b.g); b.v = tonumber(b.v); b.f = tonumber(b.f); b.o = tonumber(b.o)
  b.k = tonumber(b.k); b.q = tonumber(b.q); b.w = b.w or ''; b.r = b.r or ''
end
local dirty = false
local lease = ''

local function move(state, why)
  -- Never below the server's clock: a breaker whose hash expired starts again at 0, and its
  -- next generation must still differ from any a lease or a pending count was taken in.
  b.s = state; b.g = math.max(b.g + 1, now); b.r = why; b.k = 0; dirty = true
  redis.call('DEL', lkey)
  if state == 'open' then
    b.o = now
  elseif state == 'closed' then
    b.f = 0; b.w = ''
  end
end

local function window_failures()
  local _, n = string.gsub(b.w, '1', '')
  return n
end

local function successes(n, gen)
  if n <= 0 or b.s ~= 'closed' or gen ~= b.g then return end
  if rate == 0 then
    if b.f ~= 0 then b.f = 0; dirty = true end
  else
    b.w = string.sub(b.w .. string.rep('0', math.min(n, wsize)), -wsize)
    b.f = window_failures(); dirty = true
  end
end

local function failure()
  dirty = true
  if rate == 0 then
    b.f = b.f + 1
    if threshold > 0 and b.f >= threshold then move('open', int(b.f) .. ' consecutive failures') end
  else
    b.w = string.sub(b.w .. '1', -wsize)
    b.f = window_failures()
    local calls = string.len(b.w)
    if calls >= mincalls and b.f / calls >= rate then
      move('open', int(b.f) .. ' failures in the last ' .. int(calls) .. ' calls')
    end
  end
end

if op == 'admit' then
  if b.s == 'open' and now - b.o >= recovery then move('half_open', 'recovery timeout elapsed') end
  if b.s == 'half_open' then
    if redis.call('ZREMRANGEBYSCORE', lkey, '-inf', int(now)) > 0 then dirty = true end
    if redis.call('ZCARD', lkey) < maxcalls then
      b.q = b.q + 1
      lease = int(b.g) .. ':' .. int(b.q)
      redis.call('ZADD', lkey, int(now + lease_us), lease)
      dirty = true
    end
  end
elseif op == 'record' then
  local failed, given = ARGV[13] == '1', ARGV[14]
  if given ~= '' then
    if redis.call('ZREM', lkey, given) > 0 then dirty = true end
    local lg = tonumber(string.match(given, '^(%d+):'))
    if b.s == 'half_open' and lg == b.g then
      if failed then
        move('open', 'trial call failed: ' .. ARGV[15])
      else
        b.k = b.k + 1; dirty = true
        if b.k >= needed then move('closed', 'trial calls succeeded') end
      end
    end
  elseif b.s == 'closed' then
    successes(tonumber(ARGV[16]), tonumber(ARGV[17]))
    if failed then failure() end
  end
elseif op == 'flush' then
  successes(tonumber(ARGV[13]), tonumber(ARGV[14]))
elseif op == 'release' then
  if redis.call('ZREM', lkey, ARGV[13]) > 0 then dirty = true end
elseif op == 'force' then
  if ARGV[13] == 'open' then
    if b.s ~= 'open' then move('open', ARGV[14]) else b.o = now; dirty = true end
  elseif b.s ~= 'closed' then
    move('closed', ARGV[14])
  end
elseif op == 'reset' then
  redis.call('DEL', lkey)
  local g, v = math.max(now, b.g + 1), math.max(now, b.v + 1)
  b = {s = 'closed', g = g, v = v, f = 0, w = '', o = 0, k = 0, q = 0, r = 'reset'}
  dirty = true
end

local trials = redis.call('ZCOUNT', lkey, '(' .. int(now), '+inf')
local left = 0
if b.s == 'open' then left = math.max(0, b.o + recovery - now) / 1000 end
local calls = string.len(b.w)
if dirty then
  b.v = b.v + 1
  redis.call('HSET', hkey, 's', b.s, 'g', int(b.g), 'v', int(b.v), 'f', int(b.f), 'w', b.w,
             'o', int(b.o), 'k', int(b.k), 'q', int(b.q), 'r', b.r)
  redis.call('PEXPIRE', hkey, ttl)
  if trials > 0 then redis.call('PEXPIRE', lkey, ttl) end
  redis.call('PUBLISH', ARGV[3], cjson.encode({ARGV[2], b.s, int(b.g), int(b.v), int(b.f),
             int(calls), int(left), int(trials), b.r, int(now)}))
end
return {b.s, int(b.g), int(b.v), int(b.f), int(calls), int(left), int(trials), b.r, lease}
"""

#: KEYS: the window's sorted set (one per key of the window).  ARGV: seconds as ms, limit,
#: record_over (0/1), a unique member, ttl_ms.  Returns {count, over (0/1)}.
WINDOW = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local horizon = now - tonumber(ARGV[1]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', horizon))
local n = redis.call('ZCARD', KEYS[1])
local over = n >= tonumber(ARGV[2])
if (not over) or ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  n = n + 1
end
if over then return {n, 1} end
return {n, 0}
"""
