-- uses: lib/clock.lua lib/queue.lua lib/rate.lua
-- The seat listing's one round trip, for a batch of listings of one schedule (seatrush
-- coalesces concurrent ones; see src/redis/coalesce.rs): checks that each token is the
-- caller's ACTIVE token of this schedule, counts the request against the caller's request
-- rate, and reads the schedule's AVAILABLE seat ids once for all.
--
-- KEYS[1] {s:S}:tokens   HASH token -> record
-- KEYS[2] {s:S}:avail    ZSET AVAILABLE seatId -> seatNumber
-- KEYS[3] {s:S}:cfg      settings (userRequestsPerSecond)
-- KEYS[4], KEYS[5] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- ARGV    token1, userId1 (the caller), token2, userId2, …
--
-- Returns {'seatId,seatId,…' (empty when no token is ACTIVE), then per token: 'OK'
--          | 'TOKEN_NOT_HERE' (not a token of this schedule) | 'QUEUE_TOKEN_INVALID'
--          | 'QUEUE_TOKEN_NOT_ACTIVE' | 'FORBIDDEN' (another user's token) | 'RATE_LIMITED'}
local now = now_ms()
local seen = {}
local out = { '' }
local any = false
local per_user = redis.call('HGET', KEYS[3], 'userRequestsPerSecond')
local rate_keys = { KEYS[4], KEYS[5] }
for i = 1, #ARGV / 2 do
  local user = ARGV[2 * i]
  local code = token_refusal(seen, KEYS[1], ARGV[2 * i - 1], user, now)
    or rate_refusal(rate_keys, user, now, per_user) or 'OK'
  any = any or code == 'OK'
  out[i + 1] = code
end
-- One string rather than one reply element per seat: far cheaper to encode and decode.
if any then out[1] = table.concat(redis.call('ZRANGE', KEYS[2], 0, -1), ',') end
rate_commit()
return out
