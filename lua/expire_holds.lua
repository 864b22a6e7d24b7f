-- uses: lib/clock.lua lib/holds.lua
-- Expires the schedule's holds whose time has come: each RESERVED reservation past its
-- expiresAt becomes EXPIRED and its seats AVAILABLE again. A reservation being paid
-- (PAYING) is left to the payment saga, which ends it paid or back to RESERVED; it is looked
-- at again a second later, so it never blocks the holds due behind it. Also names the
-- payment sagas that have run too long (their request died or gave up), for the caller to
-- settle (src/payment/saga.rs). Last, removes records of ended holds that MySQL has and
-- that are older than ARGV[3] (lib/holds.lua's prune_ended_reservations).
--
-- KEYS[1] {s:S}:res, KEYS[2] {s:S}:holds, KEYS[3] {s:S}:avail, KEYS[4] {s:S}:userseats,
-- KEYS[5] {s:S}:stats, KEYS[6] {s:S}:outbox, KEYS[7] {s:S}:userholds, KEYS[8] {s:S}:rended,
-- KEYS[9] {s:S}:sagas  ZSET reservationId -> when its payment attempt began (ms),
-- KEYS[10] {s:S}:seat
-- ARGV[1] most holds to expire (and sagas to name, and records to remove) per call,
-- ARGV[2] how long a saga may run before it is settled for its request (ms),
-- ARGV[3] how long records of ended holds stay in Redis (ms)
--
-- Returns {number of holds expired, {"reservationId|userId|paymentId|totalAmount", …},
--          number of records removed}
local k = { res = KEYS[1], holds = KEYS[2], avail = KEYS[3], userseats = KEYS[4],
            stats = KEYS[5], outbox = KEYS[6], userholds = KEYS[7], rended = KEYS[8],
            seat = KEYS[10] }
local limit = tonumber(ARGV[1])
local now = now_ms()
local expired = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.holds, '-inf', now, 'LIMIT', 0, limit)) do
  local raw = redis.call('HGET', k.res, id)
  local r = raw and decode_reservation(raw)
  if not r or r.status ~= 'RESERVED' and r.status ~= 'PAYING' then
    redis.call('ZREM', k.holds, id) -- ended some other way
    seats_changed(k) -- the seat map showed its seats held
  elseif r.status == 'RESERVED' then
    release_hold(k, id, r, now, 'EXPIRED')
    expired = expired + 1
  else
    redis.call('ZADD', k.holds, now + 1000, id)
  end
end

local stale = {}
local cutoff = now - tonumber(ARGV[2])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', cutoff, 'LIMIT', 0, limit)) do
  local raw = redis.call('HGET', k.res, id)
  local r = raw and decode_reservation(raw)
  if r and r.status == 'PAYING' then
    stale[#stale + 1] = table.concat({ id, r.user, r.pay, r.total }, '|')
  else
    redis.call('ZREM', KEYS[9], id) -- settled already
    seats_changed(k)
  end
end
publish_reservations(k)
return { expired, stale, prune_ended_reservations(k, now, tonumber(ARGV[3]), limit) }
