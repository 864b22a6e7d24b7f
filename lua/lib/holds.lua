-- Helpers shared by the seat-hold and payment scripts (after lib/clock.lua, whose now_us
-- they use). A reservation's record lives in the schedule's `res` hash as
--   "userId|status|totalAmount|reservedAt|expiresAt|seatId:price,…|paidAt|endedAt|paymentId"
-- (times in ms, empty when unset; paymentId is the payment attempt while PAYING and the
-- payment once PAID); every change MySQL records is appended, whole, to the outbox as
-- `type reservations` and `rows`: id and record on alternate lines (PAYING is not: MySQL
-- keeps such a hold RESERVED). Reservation and payment ids are scheduleId * 2^32 + a
-- per-schedule sequence, so an id alone names its schedule's slot.

local function decode_reservation(raw)
  local f = {}
  for field in string.gmatch(raw .. '|', '([^|]*)|') do f[#f + 1] = field end
  return { user = f[1], status = f[2], total = f[3], rat = f[4], exp = f[5], seats = f[6],
           pat = f[7], fin = f[8], pay = f[9] or '' }
end

local function encode_reservation(r)
  return table.concat({ r.user, r.status, r.total, r.rat, r.exp, r.seats, r.pat, r.fin, r.pay },
    '|')
end

-- The record of a new hold (RESERVED; all arguments strings), built without a table: the
-- hold script makes one per request, and a table costs a script more than the string.
local function new_hold_record(user, total, reserved_at, expires_at, seats)
  return user .. '|RESERVED|' .. total .. '|' .. reserved_at .. '|' .. expires_at .. '|'
    .. seats .. '|||'
end

local function seat_list(r)
  local ids = {}
  for id in string.gmatch(r.seats, '([^,:]+):[^,]*') do ids[#ids + 1] = id end
  return ids
end

-- The schedule's seat-state version, `seatVersion` in k.stats: a new value whenever a script
-- changes which seats are AVAILABLE, held or SOLD, so a reader that kept the seats it read
-- at a version knows they are current while the version is (lua/seat_view.lua). Each value
-- is max(previous + 1, Redis's clock in µs): it moves forwards even if the clock does not,
-- and a Redis that came back older moves on from the clock, past the values it lost (the
-- instances also forget the seats they kept whenever Redis may have been replaced). A write
-- outside the scripts (loading a schedule's seats) deletes it; the next listing names the
-- seats anew. Bumped once per script run, wherever in the run: no reader sees a run half
-- done.
local seat_version_bumped = false
local function seats_changed(k)
  if seat_version_bumped then return end
  seat_version_bumped = true
  local previous = tonumber(redis.call('HGET', k.stats, 'seatVersion')) or 0
  local version = math.max(previous + 1, now_us())
  redis.call('HSET', k.stats, 'seatVersion', string.format('%.0f', version))
end

-- Reservations this run changed, as id, record, id, record, …: every script that saves one
-- calls publish_reservations before it returns, which stores them in `res` and appends them
-- to the outbox together. Until then `res` still holds their previous records, so a script
-- that may read a reservation again after saving it (a batch naming it twice) reads it with
-- load_reservation, which sees the staged record. `staged_ends` marks (by the id's index in
-- `staged`) the records that end the reservation (see LEAVES_REDIS).
local staged, staged_by_id, staged_ends = {}, {}, {}

-- Statuses after which a record only waits to leave Redis (see prune_ended_reservations).
-- PAID records stay: each holds a seat sold for good, so they are bounded by the seats, and
-- a repeated payment request is answered from them.
local LEAVES_REDIS = { CANCELLED = true, EXPIRED = true }

-- Stages a reservation's new record, encoded; `ends`: its status is one of LEAVES_REDIS.
local function stage_record(id, raw, ends)
  staged[#staged + 1] = id
  staged[#staged + 1] = raw
  staged_by_id[id] = raw
  if ends then staged_ends[#staged - 1] = true end
end

-- Stages a reservation's new record.
local function save_reservation(id, r)
  stage_record(id, encode_reservation(r), LEAVES_REDIS[r.status])
end

-- The reservation's current record (staged or stored), or nil if there is none.
local function load_reservation(k, id)
  local raw = staged_by_id[id] or redis.call('HGET', k.res, id)
  return raw and decode_reservation(raw) or nil
end

-- Stores the staged records in k.res and appends them to k.outbox, 500 per command (far
-- below Lua's unpack limit); a changed record may change what the seat map shows (a hold
-- PAID sells its seats), so the seat-state version moves. A CANCELLED or EXPIRED record is
-- indexed in k.rended by the time of its outbox entry, so it leaves Redis once that entry
-- is flushed and old enough.
local function publish_reservations(k)
  if #staged > 0 then seats_changed(k) end
  for i = 1, #staged, 1000 do
    local last = math.min(i + 999, #staged)
    redis.call('HSET', k.res, unpack(staged, i, last))
    local entry = redis.call('XADD', k.outbox, '*', 'type', 'reservations',
      'rows', table.concat(staged, '\n', i, last))
    local at = string.match(entry, '^(%d+)-')
    local ended = {}
    for j = i, last, 2 do
      if staged_ends[j] then
        ended[#ended + 1] = at
        ended[#ended + 1] = staged[j]
      end
    end
    if #ended > 0 then redis.call('ZADD', k.rended, unpack(ended)) end
  end
  staged, staged_by_id, staged_ends = {}, {}, {}
end

-- Removes up to `limit` records of CANCELLED and EXPIRED reservations that MySQL has and
-- that ended more than keep_ms ago; reads of them then come from MySQL. MySQL has a record
-- once its outbox entry is gone (the flusher deletes entries only after their commit), so
-- only records indexed before the oldest entry still in the outbox may go. Returns how many
-- went.
local function prune_ended_reservations(k, now, keep_ms, limit)
  local cutoff = now - keep_ms
  local oldest = redis.call('XRANGE', k.outbox, '-', '+', 'COUNT', 1)[1]
  if oldest then
    cutoff = math.min(cutoff, tonumber(string.match(oldest[1], '^(%d+)-')) - 1)
  end
  local gone = redis.call('ZRANGEBYSCORE', k.rended, '-inf', string.format('%.0f', cutoff),
    'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('HDEL', k.res, unpack(gone))
    redis.call('ZREM', k.rended, unpack(gone))
  end
  return #gone
end

-- The schedule's AVAILABLE seats are the ZSET k.avail, seat id -> seat number, so the lowest
-- numbers come first (best-available holds, the listing's order). The seat numbers come from
-- k.seat (seatId -> "seatNumber|price").

-- Makes the seats `ids` AVAILABLE (500 per command).
local function make_available(k, ids)
  seats_changed(k)
  for i = 1, #ids, 500 do
    local last = math.min(i + 499, #ids)
    local infos = redis.call('HMGET', k.seat, unpack(ids, i, last))
    local members = {}
    for j = i, last do
      members[#members + 1] = string.match(infos[j - i + 1] or '', '^(%d+)|') or '0'
      members[#members + 1] = ids[j]
    end
    redis.call('ZADD', k.avail, unpack(members))
  end
end

-- Takes the seats `ids` out of the AVAILABLE ones.
local function take_available(k, ids)
  seats_changed(k)
  for i = 1, #ids, 1000 do
    redis.call('ZREM', k.avail, unpack(ids, i, math.min(i + 999, #ids)))
  end
end

-- Whether each seat of ids[first..last] is AVAILABLE, as a list of booleans (one command).
local function available_flags(k, ids, first, last)
  local scores = redis.call('ZMSCORE', k.avail, unpack(ids, first, last))
  local out = {}
  for i = 1, last - first + 1 do out[i] = scores[i] ~= false and scores[i] ~= nil end
  return out
end

-- Ends a RESERVED hold (EXPIRED or CANCELLED): its seats are AVAILABLE again and no longer
-- count towards the user's limit. `k` names the keys of `release_keys`
-- (src/redis/scripts/holds.rs) and k.seat.
local function release_hold(k, id, r, now, status)
  local seats = seat_list(r)
  make_available(k, seats)
  redis.call('ZREM', k.holds, id)
  redis.call('HINCRBY', k.userseats, r.user, -#seats)
  redis.call('HINCRBY', k.userholds, r.user, -1)
  redis.call('HINCRBY', k.stats, 'heldSeats', -#seats)
  r.status, r.fin = status, tostring(now)
  save_reservation(id, r)
end

-- A PAID reservation as the payment scripts reply with it:
--   {'PAID', paymentId, totalAmount, paidAt, userId, reservedAt, 'seatId|seatNumber|price', …}
local function paid_reply(seat_key, r)
  local out = { 'PAID', r.pay, r.total, r.pat, r.user, r.rat }
  local ids = seat_list(r)
  local infos = redis.call('HMGET', seat_key, unpack(ids))
  local prices = {}
  for id, price in string.gmatch(r.seats, '([^,:]+):([^,]*)') do prices[id] = price end
  for i, id in ipairs(ids) do
    local number = string.match(infos[i] or '', '^([^|]*)|') or ''
    out[#out + 1] = id .. '|' .. number .. '|' .. prices[id]
  end
  return out
end
