-- uses: lib/clock.lua lib/queue.lua lib/holds.lua lib/rate.lua
-- Holds seats for users with ACTIVE tokens: per request, every seat or none. Takes a batch
-- of requests to one schedule and decides them in order, each seeing the holds of those
-- before it (seatrush coalesces concurrent requests; see src/redis/coalesce.rs).
--
-- KEYS[1]  {s:S}:cfg        settings and booking window
-- KEYS[2]  {s:S}:tokens     HASH token -> record
-- KEYS[3]  {s:S}:seat       HASH seatId -> "seatNumber|price" (the schedule's seats)
-- KEYS[4]  {s:S}:avail      SET of AVAILABLE seat ids
-- KEYS[5]  {s:S}:res        HASH reservationId -> record
-- KEYS[6]  {s:S}:holds      ZSET reservationId -> expiresAt (ms), RESERVED only
-- KEYS[7]  {s:S}:userseats  HASH userId -> RESERVED + PAID seats
-- KEYS[8]  {s:S}:stats      HASH counters (heldSeats)
-- KEYS[9]  {s:S}:rseq       reservation sequence
-- KEYS[10] {s:S}:outbox     STREAM
-- KEYS[11] {s:S}:userholds  HASH userId -> open (RESERVED or PAYING) holds
-- KEYS[12], KEYS[13] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- KEYS[14…] {s:S}:idem:<userId>:<Idempotency-Key>, one per request that has a key: its first
--          outcome, "fingerprint\nreply elements joined by ','", kept 24 h (refusals of the
--          caller's token or of another user's and RATE_LIMITED, lib/queue.lua's keeps_outcome,
--          are not kept)
-- ARGV[1] scheduleId, then per request: token, userId, idempotency KEYS index (0: none),
-- fingerprint, n, n distinct seatIds
--
-- Returns one reply per request, in order:
--         {'OK', reservationId, totalAmount, reservedAt, expiresAt, 'seatId|number|price', …}
--      or {'SCHEDULE_NOT_FOUND'} | {'TOKEN_NOT_HERE'} (not a token of this schedule)
--       | {'QUEUE_TOKEN_INVALID'} | {'QUEUE_TOKEN_NOT_ACTIVE'} | {'FORBIDDEN'} (another user)
--       | {'RATE_LIMITED'} | {'BOOKING_NOT_OPEN'} | {'BOOKING_CLOSED'} | {'SEAT_NOT_FOUND', seatId, …}
--       | {'SEAT_LIMIT_EXCEEDED'} | {'SEAT_ALREADY_RESERVED', seatId, …}
--       | {'IDEMPOTENCY_KEY_REUSED'}; a request whose key was used before for the same thing
--         gets that first reply again
local k = { avail = KEYS[4], res = KEYS[5], holds = KEYS[6], userseats = KEYS[7],
            stats = KEYS[8], outbox = KEYS[10], userholds = KEYS[11] }
local schedule = ARGV[1]
local now = now_ms()
local cfg = redis.call('HMGET', KEYS[1], 'maxSeatsPerUser', 'holdTtlSeconds', 'bookingOpenAt',
  'bookingCloseAt', 'userRequestsPerSecond')
local rate_keys = { KEYS[12], KEYS[13] }

-- What the batch learns and changes, applied once at the end (see finish): each token's
-- record, each user's seat count, new holds for the expiry index, counter deltas, and the
-- reservation sequence.
local tokens_seen, user_seats = {}, {}
local seat_delta, hold_delta = {}, {}
local held_delta = 0
local expiries = {}
local seq = tonumber(redis.call('GET', KEYS[9])) or 0
local first_seq = seq

local function hold(token, user, seats)
  if not cfg[1] then return { 'SCHEDULE_NOT_FOUND' } end
  local refusal = token_refusal(tokens_seen, KEYS[2], token, user, now)
    or rate_refusal(rate_keys, user, now, cfg[5])
  if refusal then return { refusal } end
  if now < tonumber(cfg[3]) then return { 'BOOKING_NOT_OPEN' } end
  if now >= tonumber(cfg[4]) then return { 'BOOKING_CLOSED' } end

  local infos = redis.call('HMGET', KEYS[3], unpack(seats))
  local missing = { 'SEAT_NOT_FOUND' }
  for i, info in ipairs(seats) do
    if not infos[i] then missing[#missing + 1] = info end
  end
  if #missing > 1 then return missing end

  local have = user_seats[user]
  if have == nil then have = tonumber(redis.call('HGET', k.userseats, user)) or 0 end
  if have + #seats > tonumber(cfg[1]) then return { 'SEAT_LIMIT_EXCEEDED' } end

  local free = redis.call('SMISMEMBER', k.avail, unpack(seats))
  local taken = { 'SEAT_ALREADY_RESERVED' }
  for i, id in ipairs(seats) do
    if free[i] == 0 then taken[#taken + 1] = id end
  end
  if #taken > 1 then return taken end

  redis.call('SREM', k.avail, unpack(seats))
  seq = seq + 1
  local id = string.format('%.0f', tonumber(schedule) * 4294967296 + seq)
  local expires = now + tonumber(cfg[2]) * 1000
  local total = 0
  local out = { 'OK', id, 0, tostring(now), tostring(expires) }
  local priced = {}
  for i, seat in ipairs(seats) do
    local number, price = string.match(infos[i], '^([^|]*)|([^|]*)$')
    total = total + tonumber(price)
    out[#out + 1] = seat .. '|' .. number .. '|' .. price
    priced[i] = seat .. ':' .. price
  end
  out[3] = total
  local r = { user = user, status = 'RESERVED', total = string.format('%.0f', total),
              rat = tostring(now), exp = tostring(expires), seats = table.concat(priced, ','),
              pat = '', fin = '', pay = '' }
  expiries[#expiries + 1] = expires
  expiries[#expiries + 1] = id
  user_seats[user] = have + #seats
  seat_delta[user] = (seat_delta[user] or 0) + #seats
  hold_delta[user] = (hold_delta[user] or 0) + 1
  held_delta = held_delta + #seats
  save_reservation(id, r)
  return out
end

-- Writes what the batch changed: the sequence, counters, expiry index and reservations.
local function finish()
  if seq == first_seq then return end
  redis.call('SET', KEYS[9], seq)
  for user, n in pairs(seat_delta) do
    redis.call('HINCRBY', k.userseats, user, n)
    redis.call('HINCRBY', k.userholds, user, hold_delta[user])
  end
  redis.call('HINCRBY', k.stats, 'heldSeats', held_delta)
  for i = 1, #expiries, 1000 do
    redis.call('ZADD', k.holds, unpack(expiries, i, math.min(i + 999, #expiries)))
  end
end

local DAY_MS = 24 * 3600 * 1000

-- The request's reply, decided once per Idempotency-Key (checked first).
local function hold_once(idem, fingerprint, token, user, seats)
  if not idem then return hold(token, user, seats) end
  local seen = redis.call('GET', idem)
  if seen then
    local first, reply = string.match(seen, '^([^\n]*)\n(.*)$')
    if first ~= fingerprint then return { 'IDEMPOTENCY_KEY_REUSED' } end
    local out = {}
    for element in string.gmatch(reply, '[^,]+') do out[#out + 1] = element end
    return out
  end
  local out = hold(token, user, seats)
  if keeps_outcome(out[1]) then
    redis.call('SET', idem, fingerprint .. '\n' .. table.concat(out, ','), 'PX', DAY_MS)
  end
  return out
end

local replies = {}
local i = 2
while i <= #ARGV do
  local token, user, idem_index, fingerprint = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]),
    ARGV[i + 3]
  local n = tonumber(ARGV[i + 4])
  local seats = {}
  for j = 1, n do seats[j] = ARGV[i + 4 + j] end
  local idem = idem_index > 0 and KEYS[idem_index] or nil
  replies[#replies + 1] = hold_once(idem, fingerprint, token, user, seats)
  i = i + 5 + n
end
finish()
publish_reservations(k)
rate_commit()
return replies
