-- uses: lib/clock.lua lib/queue.lua lib/rate.lua
-- One admission tick for a schedule: expires ACTIVE tokens past their time and WAITING tokens
-- older than a day, then moves up to min(maxActiveUsers - active, ceil(admissionPerSecond / 10),
-- what is left of this second's admissionPerSecond, ARGV[1]) tokens from the head of WAITING
-- to ACTIVE (a popped token that turns out to be a day old is expired instead).
-- Safe to run from any number of instances at once: the limits live here, not in the callers.
-- Also drops request-rate hashes of seconds that have passed (lib/rate.lua).
-- A SHUFFLE_AT_OPEN queue admits nobody from its opening until its pre-queue has been
-- shuffled (the caller runs lua/shuffle_begin.lua and lua/shuffle_apply.lua when told).
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:active, KEYS[4] {s:S}:tokens,
-- KEYS[5] {s:S}:users, KEYS[6] {s:S}:stats, KEYS[7] {s:S}:ended, KEYS[8] {s:S}:outbox,
-- KEYS[9], KEYS[10] {s:S}:rate:0, {s:S}:rate:1
-- ARGV[1] most tokens to expire, to drop and to admit per call, ARGV[2] how long ended
-- records are kept (ms)
--
-- Returns {admitted, expired, waiting, active, records dropped, 1 if the pre-queue's shuffle
-- is due (else 0)}
local k = { waiting = KEYS[2], active = KEYS[3], tokens = KEYS[4], users = KEYS[5],
            ended = KEYS[7], outbox = KEYS[8] }
local limit, keep_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local cfg = redis.call('HMGET', KEYS[1], 'maxActiveUsers', 'admissionPerSecond',
  'activeTtlSeconds', 'paused', 'bookingOpenAt', 'queueOrder', 'shuffledAt')
if not cfg[1] then return { 0, 0, 0, 0, 0, 0 } end
local now = now_ms()
local shuffle_due = cfg[6] == 'SHUFFLE_AT_OPEN' and not cfg[7] and now >= tonumber(cfg[5])
rate_sweep({ KEYS[9], KEYS[10] }, now)

-- Records that ended before this run are dropped first, so nothing below writes them again.
local dropped = redis.call('ZRANGEBYSCORE', k.ended, '-inf', now - keep_ms, 'LIMIT', 0, limit)
if #dropped > 0 then
  redis.call('HDEL', k.tokens, unpack(dropped))
  redis.call('ZREM', k.ended, unpack(dropped))
end

local expired = 0
for _, token in ipairs(redis.call('ZRANGEBYSCORE', k.active, '-inf', now, 'LIMIT', 0, limit)) do
  local raw = redis.call('HGET', k.tokens, token)
  if raw then
    end_token(k, token, decode_token(raw), now, 'EXPIRED')
  else
    redis.call('ZREM', k.active, token)
  end
  expired = expired + 1
end
-- Arrival order is issue-time order, so the stale WAITING tokens are at the head (looked at
-- a few at a time: usually the first is young and ends the loop).
for _, token in ipairs(redis.call('ZRANGE', k.waiting, 0, 7)) do
  local raw = redis.call('HGET', k.tokens, token)
  local t = raw and decode_token(raw)
  if t and is_live(t, now) then break end
  if t then end_token(k, token, t, now, 'EXPIRED') else redis.call('ZREM', k.waiting, token) end
  expired = expired + 1
end

local admitted = 0
local waiting = redis.call('ZCARD', k.waiting)
if cfg[4] ~= '1' and now >= tonumber(cfg[5]) and not shuffle_due and waiting > 0 then
  local rate = tonumber(cfg[2])
  local used = admissions_this_second(KEYS[1], KEYS[6], now, true)
  local room = tonumber(cfg[1]) - redis.call('ZCARD', k.active)
  local n = math.min(room, math.ceil(rate / 10), rate - used, waiting, limit)
  if n > 0 then
    local ttl_ms = tonumber(cfg[3]) * 1000
    local popped = redis.call('ZPOPMIN', k.waiting, n)
    for i = 1, #popped, 2 do
      local token = popped[i]
      local raw = redis.call('HGET', k.tokens, token)
      local t = raw and decode_token(raw)
      if t and is_live(t, now) then
        t.status, t.aat, t.exp = 'ACTIVE', tostring(now), tostring(now + ttl_ms)
        redis.call('ZADD', k.active, now + ttl_ms, token)
        save_token(token, t)
        admitted = admitted + 1
      elseif t then
        end_token(k, token, t, now, 'EXPIRED')
        expired = expired + 1
      end
    end
    if admitted > 0 then count_admissions(KEYS[6], admitted) end
  end
end
publish_tokens(k)
return { admitted, expired, redis.call('ZCARD', k.waiting), redis.call('ZCARD', k.active),
         #dropped, shuffle_due and 1 or 0 }
