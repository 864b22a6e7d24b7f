-- uses: lib/clock.lua lib/queue.lua lib/holds.lua
-- Payment saga, step 3 of 3 (see src/payment/saga.rs), in the schedule's slot, once the
-- balance was debited for the attempt: the PAYING reservation becomes PAID (its seats SOLD for
-- good), and the user's token is retired (USED, its slot freed) unless they still have an open
-- hold here. Committing again is harmless: a PAID reservation is answered as it is. Takes a
-- batch of commits of one schedule and decides them in order (seatrush coalesces concurrent
-- calls; see src/redis/coalesce.rs).
--
-- KEYS[1..8] {s:S}:res, :holds, :avail, :userseats, :stats, :outbox, :userholds, :rended
-- KEYS[9]  {s:S}:tokens, KEYS[10] {s:S}:sagas, KEYS[11] {s:S}:seat, KEYS[12] {s:S}:users,
-- KEYS[13] {s:S}:active, KEYS[14] {s:S}:waiting, KEYS[15] {s:S}:ended
-- ARGV: per commit, reservationId and paymentId (the attempt that debited)
--
-- Returns one reply per commit, in order: the PAID reply of lib/holds.lua
--       | {'NOT_PAYING', status} (the reservation is not being paid by that attempt: nothing
--         changed)
local k = { res = KEYS[1], holds = KEYS[2], stats = KEYS[5], outbox = KEYS[6], tokens = KEYS[9],
            users = KEYS[12], active = KEYS[13], waiting = KEYS[14], ended = KEYS[15] }
local now = now_ms()
local paid_ids, sold = {}, 0

local function commit(id, attempt)
  local r = load_reservation(k, id)
  if not r then return { 'NOT_PAYING', '' } end
  if r.status == 'PAID' and r.pay == attempt then return paid_reply(KEYS[11], r) end
  if r.status ~= 'PAYING' or r.pay ~= attempt then return { 'NOT_PAYING', r.status } end

  sold = sold + #seat_list(r)
  paid_ids[#paid_ids + 1] = id
  r.status, r.pat = 'PAID', tostring(now)
  save_reservation(id, r)
  if redis.call('HINCRBY', KEYS[7], r.user, -1) <= 0 then
    local token = redis.call('HGET', k.users, r.user)
    local t = token and redis.call('HGET', k.tokens, token)
    t = t and decode_token(t)
    if t and t.status == 'ACTIVE' and is_live(t, now) then end_token(k, token, t, now, 'USED') end
  end
  return paid_reply(KEYS[11], r)
end

local replies = {}
for i = 1, #ARGV, 2 do replies[#replies + 1] = commit(ARGV[i], ARGV[i + 1]) end
if #paid_ids > 0 then
  redis.call('ZREM', k.holds, unpack(paid_ids))
  redis.call('ZREM', KEYS[10], unpack(paid_ids))
  redis.call('HINCRBY', KEYS[5], 'heldSeats', -sold)
  redis.call('HINCRBY', KEYS[5], 'soldSeats', sold)
end
publish_reservations(k)
publish_tokens(k)
return replies
