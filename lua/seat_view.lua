-- uses: lib/clock.lua lib/queue.lua lib/rate.lua
-- The seat listing's one round trip, for a batch of listings of one schedule (seatrush
-- coalesces concurrent ones; see src/redis/coalesce.rs): checks that each token is the
-- caller's ACTIVE token of this schedule, counts the request against the caller's request
-- rate, and reads the schedule's AVAILABLE seat ids once for all; and, when a request of the
-- batch asks for the seat map, the seats of the open holds (RESERVED or PAYING) once too.
-- Neither is read when the caller already has the seats of the schedule's current seat-state
-- version (lib/holds.lua's seats_changed): the listing of a schedule nobody changed since
-- costs no more than its token check, however many seats it has.
--
-- KEYS[1] {s:S}:tokens   HASH token -> record
-- KEYS[2] {s:S}:avail    ZSET AVAILABLE seatId -> seatNumber
-- KEYS[3] {s:S}:cfg      settings (userRequestsPerSecond)
-- KEYS[4], KEYS[5] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- KEYS[6] {s:S}:res      HASH reservationId -> record (lib/holds.lua)
-- KEYS[7] {s:S}:holds    ZSET RESERVED reservationId -> expiresAt
-- KEYS[8] {s:S}:sagas    ZSET PAYING reservationId -> when its payment began
-- KEYS[9] {s:S}:stats    HASH counters and `seatVersion`
-- ARGV[1] the seat-state version whose seats the caller has (the AVAILABLE ones, and the held
--         ones too if a request of the batch asks for the map; '' none: read them), then
--         token1, userId1 (the caller), view1 ('L' the listing, 'M' the map), token2, …
--
-- Returns {the seats' version ('' when no token is ACTIVE), 'seatId,seatId,…' AVAILABLE
--          (empty when no token is ACTIVE), 'seatId,…' held (empty unless an ACTIVE token
--          asked for the map), then per token: 'OK'
--          | 'TOKEN_NOT_HERE' (not a token of this schedule) | 'QUEUE_TOKEN_INVALID'
--          | 'QUEUE_TOKEN_NOT_ACTIVE' | 'FORBIDDEN' (another user's token) | 'RATE_LIMITED'}
--          or, when ARGV[1] is the current version and a token is ACTIVE, '=' in place of
--          both seat lists: the caller's seats are current.
local now = now_ms()
local seen = {}
local out = { '', '', '' }
local any, map = false, false
local per_user = redis.call('HGET', KEYS[3], 'userRequestsPerSecond')
local rate_keys = { KEYS[4], KEYS[5] }
for i = 1, (#ARGV - 1) / 3 do
  local user = ARGV[3 * i]
  local code = token_refusal(seen, KEYS[1], ARGV[3 * i - 1], user, now)
    or rate_refusal(rate_keys, user, now, per_user) or 'OK'
  if code == 'OK' then
    any = true
    map = map or ARGV[3 * i + 1] == 'M'
  end
  out[i + 3] = code
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

if any then
  local version = redis.call('HGET', KEYS[9], 'seatVersion')
  if version and version == ARGV[1] then
    out[1], out[2], out[3] = version, '=', '='
  else
    if not version then
      -- Seats loaded outside the scripts: a version names them from now on (its first value
      -- as in lib/holds.lua's seats_changed, with no previous one).
      version = string.format('%.0f', now_us())
      redis.call('HSET', KEYS[9], 'seatVersion', version)
    end
    out[1] = version
    -- One string rather than one reply element per seat: far cheaper to encode and decode.
    out[2] = table.concat(redis.call('ZRANGE', KEYS[2], 0, -1), ',')
    if map then out[3] = held_seats() end
  end
end
rate_commit()
return out
