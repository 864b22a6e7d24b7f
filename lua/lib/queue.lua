-- Helpers shared by the queue scripts. The loader (src/redis/scripts.rs) prepends this file to
-- each script that declares `-- uses: lib/queue.lua`, so every script stays one atomic unit.
--
-- A token's record lives in the schedule's `tokens` hash as
--   "userId|status|seq|issuedAt|activatedAt|expiresAt|endedAt"   (times in ms, empty when unset)
-- and every change of it is appended, whole, to the schedule's outbox stream.

local DAY_MS = 24 * 3600 * 1000

-- Redis's own clock: one clock for every seatrush instance.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function decode_token(raw)
  local u, st, seq, iat, aat, exp, fin =
    string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return { user = u, status = st, seq = seq, iat = iat, aat = aat, exp = exp, fin = fin }
end

local function encode_token(t)
  return table.concat({ t.user, t.status, t.seq, t.iat, t.aat, t.exp, t.fin }, '|')
end

-- Stores the record and appends its full state to the outbox: the flusher upserts the latest
-- state, so a replayed or reordered event cannot move a token backwards.
local function save_token(k, schedule, token, t, kind)
  redis.call('HSET', k.tokens, token, encode_token(t))
  redis.call('XADD', k.outbox, '*', 'type', 'token', 'kind', kind, 'token', token,
    'schedule', schedule, 'user', t.user, 'status', t.status, 'seq', t.seq,
    'issuedAt', t.iat, 'activatedAt', t.aat, 'expiresAt', t.exp, 'endedAt', t.fin)
end

-- Ends a live token (EXPIRED): frees its queue or active slot and the user's live marker.
local function end_token(k, schedule, token, t, now, status)
  redis.call('ZREM', k.active, token)
  redis.call('ZREM', k.waiting, token)
  if redis.call('HGET', k.users, t.user) == token then
    redis.call('HDEL', k.users, t.user)
  end
  t.status = status
  t.fin = tostring(now)
  redis.call('ZADD', k.ended, now, token)
  save_token(k, schedule, token, t, 'ended')
end

-- True while the token is WAITING (younger than a day) or ACTIVE (before its expiry).
local function is_live(t, now)
  if t.status == 'WAITING' then return now < tonumber(t.iat) + DAY_MS end
  if t.status == 'ACTIVE' then return now < tonumber(t.exp) end
  return false
end

-- Admissions so far in the current wall-clock second, shared by every caller. On a new second
-- the finished one is folded into the measured admission rate, if anyone was waiting in it.
local function admissions_this_second(stats, now, demand)
  local window = math.floor(now / 1000)
  local s = redis.call('HMGET', stats, 'window', 'count', 'demand', 'rate')
  local count = tonumber(s[2]) or 0
  if tonumber(s[1]) ~= window then
    if s[3] == '1' then
      local prev = tonumber(s[4])
      local measured = prev and (0.7 * prev + 0.3 * count) or count
      redis.call('HSET', stats, 'rate', tostring(measured))
    end
    count = 0
    redis.call('HSET', stats, 'window', window, 'count', 0, 'demand', 0)
  end
  if demand then redis.call('HSET', stats, 'demand', 1) end
  return count
end

local function count_admissions(stats, n)
  redis.call('HINCRBY', stats, 'count', n)
  redis.call('HINCRBY', stats, 'admitted', n)
end

-- Minutes until a WAITING token at `position` is admitted at the measured rate (or the
-- configured one before anything was measured); 0 once ACTIVE.
local function wait_minutes(stats, position, configured_rate)
  if position == 0 then return 0 end
  local rate = tonumber(redis.call('HGET', stats, 'rate'))
  if not rate or rate < 0.01 then rate = configured_rate end
  return math.ceil(position / rate / 60)
end
