-- uses: lib/clock.lua lib/holds.lua
-- Moves a schedule's reservations in Redis forwards to what MySQL already holds, when Redis
-- came back older than MySQL (src/reconcile.rs): a PAID reservation is PAID again and its
-- seats are sold, a hold MySQL has that Redis lost holds its seats again, a hold MySQL has
-- seen end releases its seats. A record is only ever moved forwards; nothing is appended to
-- the outbox (MySQL has these records already).
--
-- A hold Redis lacks is one it lost only if its sequence is above the one Redis had reached
-- (below it, the record left Redis on purpose once ended). A record Redis has under the same
-- id with another user, amount or seats, or one whose seats are not free to take back, is a
-- conflict: left as it is and counted (the flusher dead-letters Redis's version).
--
-- KEYS: res, avail, holds, sagas, rended, userseats, userholds, stats, seat
-- ARGV[1]: now (ms); ARGV[2]: the reservation sequence Redis had reached (before it was
-- raised to MySQL's); then id, MySQL's record (in the format of lib/holds.lua), …, ended
-- reservations first (their seats may be the ones a later one took).
--
-- Returns { made PAID, holds restored, holds ended, conflicts }.
local k = { res = KEYS[1], avail = KEYS[2], holds = KEYS[3], sagas = KEYS[4], rended = KEYS[5],
  userseats = KEYS[6], userholds = KEYS[7], stats = KEYS[8], seat = KEYS[9] }
local now = ARGV[1]
local reached = tonumber(ARGV[2])
local OPEN = { RESERVED = true, PAYING = true }
local ENDS = { CANCELLED = true, EXPIRED = true }
local SEQUENCE = 4294967296
local paid, held, ended, conflicts = 0, 0, 0, 0

-- The hold `id` of `user` no longer open: off the expiry and saga indexes and the counts.
local function close_hold(id, user, n)
  redis.call('ZREM', k.holds, id)
  redis.call('ZREM', k.sagas, id)
  redis.call('HINCRBY', k.userholds, user, -1)
  redis.call('HINCRBY', k.stats, 'heldSeats', -n)
end

-- Who holds what, seats by id: two versions of one reservation agree on it.
local function identity(r)
  local seats = seat_list(r)
  table.sort(seats, function(a, b) return tonumber(a) < tonumber(b) end)
  return r.user .. '|' .. r.total .. '|' .. table.concat(seats, ',')
end

-- Whether every seat is AVAILABLE in Redis, so a reservation Redis lost may take it back.
local function all_free(seats)
  for _, free in ipairs(available_flags(k, seats, 1, #seats)) do
    if not free then return false end
  end
  return true
end

for i = 3, #ARGV, 2 do
  local id, stored = ARGV[i], ARGV[i + 1]
  local m = decode_reservation(stored)
  local raw = redis.call('HGET', k.res, id)
  local r = raw and decode_reservation(raw) or nil
  local seats = seat_list(m)
  local n = #seats
  local lost = r == nil and tonumber(id) % SEQUENCE > reached
  if r and identity(r) ~= identity(m) then
    conflicts = conflicts + 1
  elseif m.status == 'PAID' and r and OPEN[r.status] then
    close_hold(id, m.user, n)
    redis.call('HINCRBY', k.stats, 'soldSeats', n)
    redis.call('HSET', k.res, id, stored)
    seats_changed(k) -- held seats SOLD: the seat map changed
    paid = paid + 1
  elseif (m.status == 'PAID' or m.status == 'RESERVED') and lost then
    if not all_free(seats) then
      conflicts = conflicts + 1
    else
      take_available(k, seats)
      redis.call('HINCRBY', k.userseats, m.user, n)
      if m.status == 'PAID' then
        redis.call('HINCRBY', k.stats, 'soldSeats', n)
        paid = paid + 1
      else
        redis.call('ZADD', k.holds, tonumber(m.exp) or 0, id)
        redis.call('HINCRBY', k.userholds, m.user, 1)
        redis.call('HINCRBY', k.stats, 'heldSeats', n)
        held = held + 1
      end
      redis.call('HSET', k.res, id, stored)
    end
  elseif ENDS[m.status] and r and OPEN[r.status] then
    make_available(k, seats)
    close_hold(id, m.user, n)
    redis.call('HINCRBY', k.userseats, m.user, -n)
    redis.call('HSET', k.res, id, stored)
    redis.call('ZADD', k.rended, now, id)
    ended = ended + 1
  end
end
return { paid, held, ended, conflicts }
