-- uses: lib/clock.lua lib/queue.lua lib/rate.lua
-- Issues queue tokens for a batch of requests to one schedule, in the order given (seatrush
-- coalesces concurrent requests; see src/redis/coalesce.rs). Per request: one live token per
-- (user, schedule); arrival order by a strictly increasing sequence; ACTIVE at once when
-- nobody waits and the limits leave room.
--
-- With queueOrder SHUFFLE_AT_OPEN, issuance opens preQueueMinutes before bookingOpenAt
-- (BOOKING_NOT_OPEN before that); a token issued before bookingOpenAt is in the pre-queue:
-- WAITING without a position until the opening's shuffle (lua/shuffle_apply.lua) gives the
-- pre-queue its random order. The pre-queue's sequences so far are kept in cfg
-- (preQueueFirst, preQueueLast): the range the shuffle permutes.
--
-- KEYS[1] {s:S}:cfg      settings and booking window (absent: no such schedule)
-- KEYS[2] {s:S}:seq      arrival sequence
-- KEYS[3] {s:S}:waiting  ZSET token -> seq (the token is its seq)
-- KEYS[4] {s:S}:active   ZSET token -> expiresAt (ms)
-- KEYS[5] {s:S}:tokens   HASH token -> record
-- KEYS[6] {s:S}:users    HASH userId -> live token
-- KEYS[7] {s:S}:stats    HASH admission counters
-- KEYS[8] {s:S}:ended    ZSET token -> endedAt (for clean-up)
-- KEYS[9] {s:S}:outbox   STREAM
-- KEYS[10], KEYS[11] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- KEYS[12…] {s:S}:idem:<userId>:<Idempotency-Key>, one per request that has a key: its first
--          reply, "fingerprint\nreply", kept 24 h (QUEUE_FULL, RATE_LIMITED and
--          SCHEDULE_NOT_FOUND are not kept: a repeat tries again)
-- ARGV    per request: userId, idempotency KEYS index (0: none), fingerprint
--
-- A token is named in Redis by its arrival sequence (the member of waiting and active, the
-- field of tokens, the value of users); the Queue-Token a client holds is that sequence with
-- the schedule, the user and a MAC, made by seatrush from this reply.
--
-- Returns one reply string per request, in order:
--   'OK|status|position|waitMs|seq|issuedAt|activatedAt|expiresAt|opensAt' (a pre-queue
--   token has no position and opensAt is bookingOpenAt; else opensAt is empty)
--   or 'SCHEDULE_NOT_FOUND' | 'RATE_LIMITED' (the user's userRequestsPerSecond is spent)
--   | 'BOOKING_NOT_OPEN' (before the pre-queue) | 'BOOKING_CLOSED' | 'TOKEN_ALREADY_ISSUED' | 'QUEUE_FULL' | 'IDEMPOTENCY_KEY_REUSED'; a repeat of a request that was issued its token gets the first
--   reply again behind 'REPLAY|' (the same token, as it was then)
local k = { waiting = KEYS[3], active = KEYS[4], tokens = KEYS[5], users = KEYS[6],
            ended = KEYS[8], outbox = KEYS[9] }
local n = #ARGV / 3
local now = now_ms()
local now_s = tostring(now)
local users, idems, prints = {}, {}, {}
for i = 1, n do
  users[i] = ARGV[3 * i - 2]
  local idem = tonumber(ARGV[3 * i - 1])
  idems[i] = idem > 0 and KEYS[idem]
  prints[i] = ARGV[3 * i]
end

local cfg = redis.call('HMGET', KEYS[1], 'maxActiveUsers', 'maxWaitingUsers',
  'admissionPerSecond', 'activeTtlSeconds', 'paused', 'bookingOpenAt', 'bookingCloseAt',
  'measuredRate', 'userRequestsPerSecond', 'queueOrder', 'preQueueMinutes', 'shuffledAt')
-- A schedule that does not exist gets nothing stored: no outcome, no request count.
if not cfg[1] then
  local out = {}
  for i = 1, n do out[i] = 'SCHEDULE_NOT_FOUND' end
  return out
end
local rate_keys = { KEYS[10], KEYS[11] }
rate_prefetch(rate_keys, users, now)
local NOT_KEPT = { QUEUE_FULL = true, RATE_LIMITED = true }

-- Request i's reply, decided (by decide(i)) once per Idempotency-Key (checked first), then
-- counted against the user's request rate.
local function once(i, decide)
  local idem = idems[i]
  if idem then
    local seen = redis.call('GET', idem)
    if seen then
      local first, reply = string.match(seen, '^([^\n]*)\n(.*)$')
      if first ~= prints[i] then return 'IDEMPOTENCY_KEY_REUSED' end
      if string.sub(reply, 1, 3) == 'OK|' then return 'REPLAY|' .. reply end
      return reply
    end
  end
  local reply = rate_refusal(rate_keys, users[i], now, cfg[9]) or decide(i)
  if idem and not NOT_KEPT[reply] then
    redis.call('SET', idem, prints[i] .. '\n' .. reply, 'PX', DAY_MS)
  end
  return reply
end

local opens = tonumber(cfg[6])
local shuffled_order = cfg[10] == 'SHUFFLE_AT_OPEN'
local refused
if now >= tonumber(cfg[7]) then
  refused = 'BOOKING_CLOSED'
elseif shuffled_order and now < opens - (tonumber(cfg[11]) or 30) * 60000 then
  refused = 'BOOKING_NOT_OPEN'
end
if refused then
  local out = {}
  for i = 1, n do out[i] = once(i, function() return refused end) end
  rate_commit()
  return out
end
-- This batch's new tokens join the pre-queue.
local pre_queue = shuffled_order and now < opens
local max_active, max_waiting = tonumber(cfg[1]), tonumber(cfg[2])
local rate, ttl_ms = tonumber(cfg[3]), tonumber(cfg[4]) * 1000
-- Parsed and formatted once for the batch: a number's conversion to or from a string costs a
-- script more than most of its work.
local expires_s = string.format('%d', now + ttl_ms)
local wait_rate = estimate_rate(cfg[8], rate)
-- A shuffled queue admits nobody before its pre-queue has its order.
local may_admit = cfg[5] ~= '1' and now >= opens and (not shuffled_order or cfg[12] ~= false)

local held = redis.call('HMGET', k.users, unpack(users))
local waiting = redis.call('ZCARD', k.waiting)
local seq = tonumber(redis.call('GET', KEYS[2])) or 0
local active, admitted_now -- read when first needed
local user_tokens, waiting_adds, active_adds = {}, {}, {}
local out = {}
local first_pre_queued

local function issue(i)
  local user = users[i]
  local code
  local current = user_tokens[user] or held[i]
  if current then
    local raw = user_tokens[user] and 'live' or redis.call('HGET', k.tokens, current)
    if raw == 'live' or (raw and is_live(decode_token(raw), now)) then
      code = 'TOKEN_ALREADY_ISSUED'
    elseif raw then
      -- Past its time but not yet swept: end it here so the user can queue again, and
      -- keep this run's counts true.
      local old = decode_token(raw)
      if old.status == 'WAITING' and redis.call('ZSCORE', k.waiting, current) then
        waiting = waiting - 1
      elseif old.status == 'ACTIVE' and active and redis.call('ZSCORE', k.active, current) then
        active = active - 1
      end
      end_token(k, current, old, now, 'EXPIRED')
    end
  end
  if not code and waiting >= max_waiting then code = 'QUEUE_FULL' end
  if code then
    return code
  else
    seq = seq + 1
    local token = string.format('%d', seq)
    if may_admit and waiting == 0 and not active then
      active = redis.call('ZCARD', k.active)
      admitted_now = admissions_this_second(KEYS[1], KEYS[7], now, false)
    end
    local position, status, aat, exp = 0, 'WAITING', '', ''
    if may_admit and waiting == 0 and active < max_active and admitted_now < rate then
      status, aat, exp = 'ACTIVE', now_s, expires_s
      active_adds[#active_adds + 1] = expires_s
      active_adds[#active_adds + 1] = token
      active, admitted_now = active + 1, admitted_now + 1
    else
      -- (the admission tick marks the demand this token adds to the measured rate)
      waiting_adds[#waiting_adds + 1] = token -- (the score: the sequence, as the member is)
      waiting_adds[#waiting_adds + 1] = token
      waiting = waiting + 1
      position = waiting
    end
    user_tokens[user] = token
    save_token_record(token, new_token_record(user, status, token, now_s, aat, exp))
    if pre_queue then
      first_pre_queued = first_pre_queued or token
      -- Its place is drawn at the opening: the wait is until then, and then that of the
      -- middle of the pre-queue.
      local wait = opens - now + wait_ms(math.ceil(waiting / 2), wait_rate)
      return string.format('OK|WAITING||%d|%s|%s|||%s', wait, token, now_s, cfg[6])
    end
    return string.format('OK|%s|%d|%d|%s|%s|%s|%s|', status, position,
      wait_ms(position, wait_rate), token, now_s, aat, exp)
  end
end

for i = 1, n do out[i] = once(i, issue) end

if #waiting_adds > 0 then redis.call('ZADD', k.waiting, unpack(waiting_adds)) end
if #active_adds > 0 then
  redis.call('ZADD', k.active, unpack(active_adds))
  count_admissions(KEYS[7], #active_adds / 2)
end
local user_pairs = {}
for user, token in pairs(user_tokens) do
  user_pairs[#user_pairs + 1] = user
  user_pairs[#user_pairs + 1] = token
end
if #user_pairs > 0 then
  redis.call('HSET', k.users, unpack(user_pairs))
  redis.call('SET', KEYS[2], seq)
end
if first_pre_queued then
  redis.call('HSETNX', KEYS[1], 'preQueueFirst', first_pre_queued)
  redis.call('HSET', KEYS[1], 'preQueueLast', seq)
end
publish_tokens(k)
rate_commit()
return out
