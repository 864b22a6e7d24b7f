-- uses: lib/clock.lua lib/queue.lua lib/holds.lua
-- Payment saga, step 3 of 3 (SPEC §6), in the schedule's slot, once the balance was debited
-- for the attempt: the PAYING reservation becomes PAID (its seats SOLD for good), and the
-- user's token is retired (USED, its slot freed) unless they still have an open hold here.
-- Committing again is harmless: a PAID reservation is answered as it is.
--
-- KEYS[1..7] {s:S}:res, :holds, :avail, :userseats, :stats, :outbox, :userholds
-- KEYS[8]  {s:S}:tokens, KEYS[9] {s:S}:sagas, KEYS[10] {s:S}:seat, KEYS[11] {s:S}:users,
-- KEYS[12] {s:S}:active, KEYS[13] {s:S}:waiting, KEYS[14] {s:S}:ended
-- ARGV[1] reservationId, ARGV[2] paymentId (the attempt that debited)
--
-- Returns the PAID reply of lib/holds.lua | {'NOT_PAYING', status} (the reservation is not
-- being paid by that attempt: nothing changed)
local k = { res = KEYS[1], holds = KEYS[2], outbox = KEYS[6], tokens = KEYS[8],
            users = KEYS[11], active = KEYS[12], waiting = KEYS[13], ended = KEYS[14] }
local id, attempt = ARGV[1], ARGV[2]
local raw = redis.call('HGET', k.res, id)
if not raw then return { 'NOT_PAYING', '' } end
local r = decode_reservation(raw)
if r.status == 'PAID' and r.pay == attempt then return paid_reply(KEYS[10], r) end
if r.status ~= 'PAYING' or r.pay ~= attempt then return { 'NOT_PAYING', r.status } end

local now = now_ms()
local seats = #seat_list(r)
r.status, r.pat = 'PAID', tostring(now)
redis.call('ZREM', k.holds, id)
redis.call('ZREM', KEYS[9], id)
redis.call('HINCRBY', KEYS[5], 'heldSeats', -seats)
redis.call('HINCRBY', KEYS[5], 'soldSeats', seats)
save_reservation(id, r)
publish_reservations(k)

if redis.call('HINCRBY', KEYS[7], r.user, -1) <= 0 then
  local token = redis.call('HGET', k.users, r.user)
  local t = token and redis.call('HGET', k.tokens, token)
  t = t and decode_token(t)
  if t and t.status == 'ACTIVE' and is_live(t, now) then
    end_token(k, token, t, now, 'USED')
    publish_tokens(k)
  end
end
return paid_reply(KEYS[10], r)
