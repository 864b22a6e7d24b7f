-- uses: lib/clock.lua lib/holds.lua
-- Expires the schedule's holds whose time has come: each RESERVED reservation past its
-- expiresAt becomes EXPIRED and its seats AVAILABLE again. A reservation being paid
-- (PAYING) is left to the payment saga, which ends it paid or back to RESERVED; it is looked
-- at again a second later, so it never blocks the holds due behind it.
--
-- KEYS[1] {s:S}:res, KEYS[2] {s:S}:holds, KEYS[3] {s:S}:avail, KEYS[4] {s:S}:userseats,
-- KEYS[5] {s:S}:stats, KEYS[6] {s:S}:outbox
-- ARGV[1] most holds to expire per call
--
-- Returns the number of holds expired.
local k = { res = KEYS[1], holds = KEYS[2], avail = KEYS[3], userseats = KEYS[4],
            stats = KEYS[5], outbox = KEYS[6] }
local now = now_ms()
local expired = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.holds, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))) do
  local raw = redis.call('HGET', k.res, id)
  local r = raw and decode_reservation(raw)
  if not r or r.status ~= 'RESERVED' and r.status ~= 'PAYING' then
    redis.call('ZREM', k.holds, id) -- ended some other way
  elseif r.status == 'RESERVED' then
    release_hold(k, id, r, now, 'EXPIRED')
    expired = expired + 1
  else
    redis.call('ZADD', k.holds, now + 1000, id)
  end
end
return expired
