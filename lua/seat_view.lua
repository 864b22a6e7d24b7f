-- uses: lib/clock.lua lib/queue.lua lib/rate.lua
-- The seat listing's one round trip, for a batch of listings of one schedule (seatrush
-- coalesces concurrent ones; see src/redis/coalesce.rs): checks that each token is the
-- caller's ACTIVE token of this schedule, counts the request against the caller's request
-- rate, and reads the schedule's AVAILABLE seat ids once for all; and, when a request of the
-- batch asks for the seat map, the seats of the open holds (RESERVED or PAYING) once too.
--
-- KEYS[1] {s:S}:tokens   HASH token -> record
-- KEYS[2] {s:S}:avail    ZSET AVAILABLE seatId -> seatNumber
-- KEYS[3] {s:S}:cfg      settings (userRequestsPerSecond)
-- KEYS[4], KEYS[5] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- KEYS[6] {s:S}:res      HASH reservationId -> record (lib/holds.lua)
-- KEYS[7] {s:S}:holds    ZSET RESERVED reservationId -> expiresAt
-- KEYS[8] {s:S}:sagas    ZSET PAYING reservationId -> when its payment began
-- ARGV    token1, userId1 (the caller), view1 ('L' the listing, 'M' the map), token2, …
--
-- Returns {'seatId,seatId,…' AVAILABLE (empty when no token is ACTIVE), 'seatId,…' held
--          (empty unless an ACTIVE token asked for the map), then per token: 'OK'
--          | 'TOKEN_NOT_HERE' (not a token of this schedule) | 'QUEUE_TOKEN_INVALID'
--          | 'QUEUE_TOKEN_NOT_ACTIVE' | 'FORBIDDEN' (another user's token) | 'RATE_LIMITED'}
local now = now_ms()
local seen = {}
local out = { '', '' }
local any, map = false, false
local per_user = redis.call('HGET', KEYS[3], 'userRequestsPerSecond')
local rate_keys = { KEYS[4], KEYS[5] }
for i = 1, #ARGV / 3 do
  local user = ARGV[3 * i - 1]
  local code = token_refusal(seen, KEYS[1], ARGV[3 * i - 2], user, now)
    or rate_refusal(rate_keys, user, now, per_user) or 'OK'
  if code == 'OK' then
    any = true
    map = map or ARGV[3 * i] == 'M'
  end
  out[i + 2] = code
end

-- The seat ids of the open holds, from their records' `seatId:price,…` field.
local function held_seats()
  local ids = redis.call('ZRANGE', KEYS[7], 0, -1)
  for _, id in ipairs(redis.call('ZRANGE', KEYS[8], 0, -1)) do ids[#ids + 1] = id end
  local parts = {}
  for i = 1, #ids, 1000 do
    local records = redis.call('HMGET', KEYS[6], unpack(ids, i, math.min(i + 999, #ids)))
    for _, raw in ipairs(records) do
      local seats = raw and string.match(raw, '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)')
      if seats and seats ~= '' then parts[#parts + 1] = (string.gsub(seats, ':[^,]*', '')) end
    end
  end
  return table.concat(parts, ',')
end

-- One string rather than one reply element per seat: far cheaper to encode and decode.
if any then out[1] = table.concat(redis.call('ZRANGE', KEYS[2], 0, -1), ',') end
if map then out[2] = held_seats() end
rate_commit()
return out
