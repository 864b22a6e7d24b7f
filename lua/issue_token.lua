-- uses: lib/queue.lua
-- Issues a queue token: one live token per (user, schedule), arrival order by a strictly
-- increasing sequence, ACTIVE at once when nobody waits and the limits leave room.
--
-- KEYS[1] {s:S}:cfg      settings and booking window (absent: no such schedule)
-- KEYS[2] {s:S}:seq      arrival sequence
-- KEYS[3] {s:S}:waiting  ZSET token -> seq
-- KEYS[4] {s:S}:active   ZSET token -> expiresAt (ms)
-- KEYS[5] {s:S}:tokens   HASH token -> record
-- KEYS[6] {s:S}:users    HASH userId -> live token
-- KEYS[7] {s:S}:stats    HASH admission counters and measured rate
-- KEYS[8] {s:S}:ended    ZSET token -> endedAt (for clean-up)
-- KEYS[9] {s:S}:outbox   STREAM
-- ARGV[1] token (uuid), ARGV[2] userId, ARGV[3] scheduleId
--
-- Returns {'OK', status, position, waitMinutes, seq, issuedAt, activatedAt, expiresAt}
--      or {'SCHEDULE_NOT_FOUND'} | {'BOOKING_CLOSED'} | {'TOKEN_ALREADY_ISSUED'} | {'QUEUE_FULL'}
local k = { waiting = KEYS[3], active = KEYS[4], tokens = KEYS[5], users = KEYS[6],
            ended = KEYS[8], outbox = KEYS[9] }
local token, user, schedule = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()

local cfg = redis.call('HMGET', KEYS[1], 'maxActiveUsers', 'maxWaitingUsers',
  'admissionPerSecond', 'activeTtlSeconds', 'paused', 'bookingOpenAt', 'bookingCloseAt')
if not cfg[1] then return { 'SCHEDULE_NOT_FOUND' } end
local max_active, max_waiting = tonumber(cfg[1]), tonumber(cfg[2])
local rate, ttl_ms = tonumber(cfg[3]), tonumber(cfg[4]) * 1000
if now >= tonumber(cfg[7]) then return { 'BOOKING_CLOSED' } end

local held = redis.call('HGET', k.users, user)
if held then
  local raw = redis.call('HGET', k.tokens, held)
  if raw then
    local old = decode_token(raw)
    if is_live(old, now) then return { 'TOKEN_ALREADY_ISSUED' } end
    -- Past its time but not yet swept: end it here so the user can queue again.
    end_token(k, schedule, held, old, now, 'EXPIRED')
  else
    redis.call('HDEL', k.users, user)
  end
end

local waiting = redis.call('ZCARD', k.waiting)
if waiting >= max_waiting then return { 'QUEUE_FULL' } end

local seq = redis.call('INCR', KEYS[2])
local t = { user = user, status = 'WAITING', seq = tostring(seq), iat = tostring(now),
            aat = '', exp = '', fin = '' }
local admit_now = cfg[5] ~= '1' and now >= tonumber(cfg[6]) and waiting == 0
  and redis.call('ZCARD', k.active) < max_active
  and admissions_this_second(KEYS[7], now, false) < rate
local position = 0
if admit_now then
  t.status, t.aat, t.exp = 'ACTIVE', tostring(now), tostring(now + ttl_ms)
  redis.call('ZADD', k.active, now + ttl_ms, token)
  count_admissions(KEYS[7], 1)
else
  redis.call('ZADD', k.waiting, seq, token)
  admissions_this_second(KEYS[7], now, true)
  position = waiting + 1
end
redis.call('HSET', k.users, user, token)
save_token(k, schedule, token, t, 'issued')
return { 'OK', t.status, position, wait_minutes(KEYS[7], position, rate), seq, t.iat, t.aat, t.exp }
