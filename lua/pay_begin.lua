-- uses: lib/clock.lua lib/queue.lua lib/holds.lua lib/rate.lua
-- Payment saga, step 1 of 3 (see src/payment/saga.rs), in the schedule's slot: checks the
-- caller's ACTIVE token and the reservation, then marks the RESERVED reservation PAYING under
-- a new payment attempt id, so nothing else (cancel, expiry, a second payment) can end it
-- until the saga commits or rolls back. A hold already past its expiry is expired here
-- instead. Takes a batch of requests to one schedule and decides them in order (seatrush
-- coalesces concurrent requests; see src/redis/coalesce.rs).
--
-- KEYS[1..8] {s:S}:res, :holds, :avail, :userseats, :stats, :outbox, :userholds, :rended
--            (as for release_hold in lib/holds.lua)
-- KEYS[9]  {s:S}:tokens  HASH token -> record
-- KEYS[10] {s:S}:sagas   ZSET reservationId -> when its payment attempt began (ms)
-- KEYS[11] {s:S}:pseq    payment sequence
-- KEYS[12] {s:S}:seat    HASH seatId -> "seatNumber|price"
-- KEYS[13] {s:S}:cfg     settings (userRequestsPerSecond)
-- KEYS[14], KEYS[15] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- KEYS[16…] {s:S}:idem:<userId>:<Idempotency-Key>, one per request that has a key:
--          "fingerprint\n" followed by the first outcome (reply elements joined by ','), or
--          by "PENDING|paymentId" while that attempt runs; kept 24 h (refusals of the
--          caller's token or of another user's and RATE_LIMITED, lib/queue.lua's
--          keeps_outcome, are not kept)
-- ARGV[1] scheduleId, then per request: token, userId, reservationId, idempotency KEYS
-- index (0: none), fingerprint
--
-- Returns one reply per request, in order:
--         {'PAYING', paymentId, totalAmount} (go on with the debit)
--       | the PAID reply of lib/holds.lua (a repeat of a request that completed)
--       | {'TOKEN_NOT_HERE'} (not a token of this schedule) | {'QUEUE_TOKEN_INVALID'}
--       | {'QUEUE_TOKEN_NOT_ACTIVE'} | {'FORBIDDEN'} (token or reservation of another user)
--       | {'RATE_LIMITED'}
--       | {'RESERVATION_NOT_FOUND'} | {'RESERVATION_ALREADY_PAID'} | {'PAYMENT_IN_PROGRESS'}
--       | {'RESERVATION_EXPIRED'} | {'RESERVATION_NOT_PAYABLE'} (cancelled)
--       | {'INSUFFICIENT_BALANCE'} (a repeat: that was the first outcome)
--       | {'REQUEST_IN_PROGRESS'} | {'IDEMPOTENCY_KEY_REUSED'}
local k = { res = KEYS[1], holds = KEYS[2], avail = KEYS[3], userseats = KEYS[4],
            stats = KEYS[5], outbox = KEYS[6], userholds = KEYS[7], rended = KEYS[8],
            seat = KEYS[12] }
local schedule = ARGV[1]
local now = now_ms()
local pseq = tonumber(redis.call('GET', KEYS[11])) or 0
local first_pseq = pseq
local tokens_seen = {} -- the batch's tokens, read once (this script changes none)
local per_user = redis.call('HGET', KEYS[13], 'userRequestsPerSecond')
local rate_keys = { KEYS[14], KEYS[15] }

local function begin(token, user, id)
  local refusal = token_refusal(tokens_seen, KEYS[9], token, user, now)
    or rate_refusal(rate_keys, user, now, per_user)
  if refusal then return { refusal } end

  local r = load_reservation(k, id)
  if not r then return { 'RESERVATION_NOT_FOUND' } end
  if r.user ~= user then return { 'FORBIDDEN' } end
  if r.status == 'PAID' then return { 'RESERVATION_ALREADY_PAID' } end
  if r.status == 'PAYING' then return { 'PAYMENT_IN_PROGRESS' } end
  if r.status == 'EXPIRED' then return { 'RESERVATION_EXPIRED' } end
  if r.status ~= 'RESERVED' then return { 'RESERVATION_NOT_PAYABLE' } end
  if now >= tonumber(r.exp) then
    release_hold(k, id, r, now, 'EXPIRED')
    return { 'RESERVATION_EXPIRED' }
  end

  r.status = 'PAYING'
  pseq = pseq + 1
  r.pay = string.format('%.0f', tonumber(schedule) * 4294967296 + pseq)
  redis.call('HSET', k.res, id, encode_reservation(r))
  redis.call('ZADD', KEYS[10], now, id)
  return { 'PAYING', r.pay, r.total }
end

local DAY_MS = 24 * 3600 * 1000

local function one(token, user, id, idem, fingerprint)
  if idem then
    local seen = redis.call('GET', idem)
    if seen then
      local first, outcome = string.match(seen, '^([^\n]*)\n(.*)$')
      if first ~= fingerprint then return { 'IDEMPOTENCY_KEY_REUSED' } end
      local attempt = string.match(outcome, '^PENDING|(.*)$')
      if not attempt then
        local out = {}
        for element in string.gmatch(outcome, '[^,]+') do out[#out + 1] = element end
        return out
      end
      local r = load_reservation(k, id)
      if r and r.pay == attempt and r.status == 'PAYING' then return { 'REQUEST_IN_PROGRESS' } end
      if r and r.pay == attempt and r.status == 'PAID' then return paid_reply(KEYS[12], r) end
      -- That attempt was given up without an outcome (its request failed): start afresh.
    end
  end
  local out = begin(token, user, id)
  if idem and keeps_outcome(out[1]) then
    local outcome = out[1] == 'PAYING' and 'PENDING|' .. out[2] or table.concat(out, ',')
    redis.call('SET', idem, fingerprint .. '\n' .. outcome, 'PX', DAY_MS)
  end
  return out
end

local replies = {}
for i = 2, #ARGV, 5 do
  local idem = tonumber(ARGV[i + 3])
  replies[#replies + 1] = one(ARGV[i], ARGV[i + 1], ARGV[i + 2], idem > 0 and KEYS[idem] or nil,
    ARGV[i + 4])
end
publish_reservations(k) -- holds found past their expiry were expired
if pseq > first_pseq then redis.call('SET', KEYS[11], pseq) end
rate_commit()
return replies
