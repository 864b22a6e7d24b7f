-- uses: lib/clock.lua lib/holds.lua
-- Payment saga rollback, in the schedule's slot, once the attempt is known not to have
-- debited anything (too little money, or fenced off by void_debit.lua): the PAYING
-- reservation is RESERVED again, as it was, and expires on time if it is due (MySQL never
-- saw it PAYING, so nothing goes to the outbox).
--
-- KEYS[1] {s:S}:res, KEYS[2] {s:S}:sagas
-- KEYS[3] {s:S}:idem:<userId>:<Idempotency-Key>   only when the attempt's request had one
-- ARGV[1] reservationId, ARGV[2] paymentId (the attempt), ARGV[3] with KEYS[3]: the
-- request's fingerprint and ARGV[4] the outcome to keep for it
--
-- Returns {'OK'} | {'NOT_PAYING'} (settled already: nothing changed)
local id, attempt = ARGV[1], ARGV[2]
local raw = redis.call('HGET', KEYS[1], id)
local r = raw and decode_reservation(raw)
if not r or r.status ~= 'PAYING' or r.pay ~= attempt then return { 'NOT_PAYING' } end
r.status, r.pay = 'RESERVED', ''
redis.call('HSET', KEYS[1], id, encode_reservation(r))
redis.call('ZREM', KEYS[2], id)
if KEYS[3] then
  redis.call('SET', KEYS[3], ARGV[3] .. '\n' .. ARGV[4], 'PX', 24 * 3600 * 1000)
end
return { 'OK' }
