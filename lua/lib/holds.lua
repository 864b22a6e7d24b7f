-- Helpers shared by the seat-hold scripts. A reservation's record lives in the schedule's
-- `res` hash as
--   "userId|status|totalAmount|reservedAt|expiresAt|seatId:price,seatId:price,…|paidAt|endedAt"
-- (times in ms, empty when unset); every change of it is appended, whole, to the outbox as
-- `type reservations` followed by id -> record pairs. Reservation ids are
-- scheduleId * 2^32 + a per-schedule sequence, so an id alone names its schedule's slot.

local function decode_reservation(raw)
  local u, st, total, rat, exp, seats, pat, fin =
    string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return { user = u, status = st, total = total, rat = rat, exp = exp, seats = seats,
           pat = pat, fin = fin }
end

local function encode_reservation(r)
  return table.concat({ r.user, r.status, r.total, r.rat, r.exp, r.seats, r.pat, r.fin }, '|')
end

local function seat_list(r)
  local ids = {}
  for id in string.gmatch(r.seats, '([^,:]+):[^,]*') do ids[#ids + 1] = id end
  return ids
end

-- Stores a reservation and appends it to the outbox.
local function save_reservation(res_key, outbox, id, r)
  local record = encode_reservation(r)
  redis.call('HSET', res_key, id, record)
  redis.call('XADD', outbox, '*', 'type', 'reservations', id, record)
end

-- Ends a RESERVED hold (EXPIRED or CANCELLED): its seats are AVAILABLE again and no longer
-- count towards the user's limit.
local function release_hold(k, id, r, now, status)
  local seats = seat_list(r)
  redis.call('SADD', k.avail, unpack(seats))
  redis.call('ZREM', k.holds, id)
  redis.call('HINCRBY', k.userseats, r.user, -#seats)
  redis.call('HINCRBY', k.stats, 'heldSeats', -#seats)
  r.status, r.fin = status, tostring(now)
  save_reservation(k.res, k.outbox, id, r)
end
