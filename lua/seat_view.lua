-- uses: lib/clock.lua lib/queue.lua
-- The seat listing's one round trip, for a batch of listings of one schedule (seatrush
-- coalesces concurrent ones; see src/redis/coalesce.rs): checks that each token is an
-- ACTIVE token of this schedule, and reads the schedule's AVAILABLE seat ids once for all.
--
-- KEYS[1] {s:S}:tokens   HASH token -> record
-- KEYS[2] {s:S}:avail    SET of AVAILABLE seat ids
-- ARGV    the tokens
--
-- Returns {'seatId,seatId,…' (empty when no token is ACTIVE), then per token: 'OK'
--          | 'TOKEN_NOT_HERE' (not a token of this schedule) | 'QUEUE_TOKEN_INVALID'
--          | 'QUEUE_TOKEN_NOT_ACTIVE'}
local now = now_ms()
local records = redis.call('HMGET', KEYS[1], unpack(ARGV))
local out = { '' }
local any = false
for i = 1, #ARGV do
  local raw = records[i]
  local code = 'TOKEN_NOT_HERE'
  if raw then
    local t = decode_token(raw)
    if not is_live(t, now) then
      code = 'QUEUE_TOKEN_INVALID'
    elseif t.status ~= 'ACTIVE' then
      code = 'QUEUE_TOKEN_NOT_ACTIVE'
    else
      code = 'OK'
      any = true
    end
  end
  out[i + 1] = code
end
-- One string rather than one reply element per seat: far cheaper to encode and decode.
if any then out[1] = table.concat(redis.call('SMEMBERS', KEYS[2]), ',') end
return out
