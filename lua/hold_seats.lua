-- uses: lib/clock.lua lib/queue.lua lib/holds.lua lib/rate.lua
-- Holds seats for users with ACTIVE tokens: per request, every seat it names or none, or as
-- many seats as it asks for, chosen here (best available: the lowest seat numbers that are
-- consecutive, else the lowest ones, looked for among at most SCAN_MAX of the lowest AVAILABLE
-- seats, so the cost does not grow with the schedule). Takes a batch of requests to one
-- schedule and decides them in order, each seeing the holds of those before it (seatrush
-- coalesces concurrent requests; see src/redis/coalesce.rs). What the batch reads (tokens,
-- seats, the users' seat counts, the lowest AVAILABLE seats) it reads once for all its
-- requests, and what it changes it writes once at the end: a command costs a script about as
-- much as a request's own work.
--
-- KEYS[1]  {s:S}:cfg        settings and booking window
-- KEYS[2]  {s:S}:tokens     HASH token -> record
-- KEYS[3]  {s:S}:seat       HASH seatId -> "seatNumber|price" (the schedule's seats)
-- KEYS[4]  {s:S}:avail      ZSET AVAILABLE seatId -> seatNumber
-- KEYS[5]  {s:S}:res        HASH reservationId -> record
-- KEYS[6]  {s:S}:holds      ZSET reservationId -> expiresAt (ms), RESERVED only
-- KEYS[7]  {s:S}:userseats  HASH userId -> RESERVED + PAID seats
-- KEYS[8]  {s:S}:stats      HASH counters (heldSeats)
-- KEYS[9]  {s:S}:rseq       reservation sequence
-- KEYS[10] {s:S}:outbox     STREAM
-- KEYS[11] {s:S}:userholds  HASH userId -> open (RESERVED or PAYING) holds
-- KEYS[12], KEYS[13] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- KEYS[14…] {s:S}:idem:<userId>:<Idempotency-Key>, one per request that has a key: its first
--          outcome, "fingerprint\nreply elements joined by ','", kept 24 h (refusals of the
--          caller's token or of another user's and RATE_LIMITED, lib/queue.lua's keeps_outcome,
--          are not kept)
-- ARGV[1] scheduleId, then per request: token, userId, idempotency KEYS index (0: none),
-- fingerprint, then n and n distinct seatIds, or 0 and how many seats to choose
--
-- Returns one reply per request, in order:
--         {'OK', reservationId, totalAmount, reservedAt, expiresAt, 'seatId|number|price', …}
--      or {'SCHEDULE_NOT_FOUND'} | {'TOKEN_NOT_HERE'} (not a token of this schedule)
--       | {'QUEUE_TOKEN_INVALID'} | {'QUEUE_TOKEN_NOT_ACTIVE'} | {'FORBIDDEN'} (another user)
--       | {'RATE_LIMITED'} | {'BOOKING_NOT_OPEN'} | {'BOOKING_CLOSED'} | {'SEAT_NOT_FOUND', seatId, …}
--       | {'SEAT_LIMIT_EXCEEDED'} | {'SEAT_ALREADY_RESERVED', seatId, …}
--       | {'NOT_ENOUGH_SEATS', how many are AVAILABLE} (best available)
--       | {'IDEMPOTENCY_KEY_REUSED'}; a request whose key was used before for the same thing
--         gets that first reply again
local k = { seat = KEYS[3], avail = KEYS[4], res = KEYS[5], holds = KEYS[6],
            userseats = KEYS[7], stats = KEYS[8], outbox = KEYS[10], userholds = KEYS[11] }
local schedule = ARGV[1]
local now = now_ms()
local cfg = redis.call('HMGET', KEYS[1], 'maxSeatsPerUser', 'holdTtlSeconds', 'bookingOpenAt',
  'bookingCloseAt', 'userRequestsPerSecond')
local rate_keys = { KEYS[12], KEYS[13] }
-- The settings and times every request of the batch uses, parsed and formatted once: a
-- number's conversion to or from a string costs a script more than most of its work.
local limit, opens, closes = tonumber(cfg[1]), tonumber(cfg[3]), tonumber(cfg[4])
local now_s = string.format('%d', now)
local expires_s = string.format('%d', now + (tonumber(cfg[2]) or 0) * 1000)
local id_base = tonumber(schedule) * 4294967296

-- The requests: where each starts in ARGV, their tokens and users, and every seat they name
-- in order (request r's seats are batch_seats[firsts[r]..lasts[r]]), or (wants[r]) how many
-- best-available seats they ask for.
local starts, tokens, users, batch_seats, firsts, lasts, wants = {}, {}, {}, {}, {}, {}, {}
local wanted = 0 -- seats the batch's best-available requests ask for in all
do
  local i = 2
  while i <= #ARGV do
    local n = tonumber(ARGV[i + 4])
    local r = #starts + 1
    starts[r], tokens[r], users[r] = i, ARGV[i], ARGV[i + 1]
    if n == 0 then
      wants[r] = tonumber(ARGV[i + 5])
      wanted = wanted + wants[r]
      i = i + 6
    else
      firsts[r] = #batch_seats + 1
      for j = i + 5, i + 4 + n do batch_seats[#batch_seats + 1] = ARGV[j] end
      lasts[r] = #batch_seats
      i = i + 5 + n
    end
  end
end

-- What the batch learns and changes, applied once at the end (see finish): each token's
-- record, each user's seat count and new holds (users_held: the users who hold, in order),
-- the seats held (`held` by id, and in order), new holds for the expiry index, the held
-- seats' counter, and the reservation sequence.
local tokens_seen, user_seats = {}, nil
local new_holds, users_held = {}, {}
local held, held_seats = {}, {}
local held_delta = 0
local expiries = {}
local seq = tonumber(redis.call('GET', KEYS[9])) or 0
local first_seq = seq
if cfg[1] then token_prefetch(tokens_seen, KEYS[2], tokens) end
rate_expect(users)

-- Each seat of batch_seats as it was before the batch, read on first need for every request
-- at once: "seatNumber|price" (false: no such seat), and 1 if AVAILABLE.
local seat_info, seat_free
local function read_seats()
  seat_info, seat_free = {}, {}
  for i = 1, #batch_seats, 1000 do
    local last = math.min(i + 999, #batch_seats)
    local infos = redis.call('HMGET', KEYS[3], unpack(batch_seats, i, last))
    local free = available_flags(k, batch_seats, i, last)
    for j = i, last do
      seat_info[j], seat_free[j] = infos[j - i + 1], free[j - i + 1]
    end
  end
end

-- Seats the batch holds stay in k.avail until finish; until then `held` tells them apart.
local function unknown(s) return not seat_info[s] end
local function taken(s) return not seat_free[s] or held[batch_seats[s]] end

-- The user's RESERVED + PAID seats, as this batch has them so far (every user of the batch
-- read with one command, on first need).
local function seats_of(user)
  if not user_seats then
    user_seats = {}
    local counts = redis.call('HMGET', k.userseats, unpack(users))
    for i, u in ipairs(users) do user_seats[u] = tonumber(counts[i]) or 0 end
  end
  return user_seats[user]
end

-- Best available. The batch reads the lowest AVAILABLE seats once, into `window` (ids and
-- seat numbers, in seat-number order), room for 4 per seat its requests ask for (at least
-- SCAN_FIRST); each request looks among the lowest SCAN_MAX of them that the batch does not
-- hold yet, for the first run of q consecutive seat numbers, else takes the lowest q. While
-- no run is found, fewer than SCAN_MAX were looked at and more seats are AVAILABLE than were
-- read, the window is read again four times as wide (at most SCAN_MAX besides the batch's
-- own holds). Seats before `low` are all held by the batch.
local SCAN_FIRST, SCAN_MAX = 32, 512
local window_ids, window_numbers, window_width, low
local function read_window(width)
  local raw = redis.call('ZRANGE', k.avail, 0, width - 1, 'WITHSCORES')
  window_ids, window_numbers, window_width, low = {}, {}, width, 1
  for i = 1, #raw / 2 do
    window_ids[i], window_numbers[i] = raw[2 * i - 1], tonumber(raw[2 * i])
  end
end

-- Picks q seats for a request; appends them to batch_seats with their "seatNumber|price" in
-- `picked` and returns their first and last index there, or nil and how many seats are
-- AVAILABLE when fewer than q are.
local picked = {}
local function choose_best(q)
  if not window_ids then read_window(math.max(SCAN_FIRST, 4 * wanted)) end
  local ids
  while true do
    while low <= #window_ids and held[window_ids[low]] do low = low + 1 end
    -- The lowest free seats (up to q), the current run of consecutive numbers, and how many
    -- free seats were looked at.
    local lowest, run, looked, last_number = {}, {}, 0, nil
    for i = low, #window_ids do
      local id = window_ids[i]
      if not held[id] then
        looked = looked + 1
        if looked <= q then lowest[looked] = id end
        if last_number and window_numbers[i] == last_number + 1 then
          run[#run + 1] = id
        else
          run = { id }
        end
        last_number = window_numbers[i]
        if #run == q then ids = run break end
        if looked == SCAN_MAX then break end
      end
    end
    if ids then break end
    local complete = #window_ids < window_width -- every AVAILABLE seat is in the window
    local widest = SCAN_MAX + #held_seats
    if complete or looked == SCAN_MAX or window_width >= widest then
      if looked < q then return nil, looked end
      ids = lowest
      break
    end
    read_window(math.min(window_width * 4, widest))
  end
  local infos = redis.call('HMGET', k.seat, unpack(ids))
  local first = #batch_seats + 1
  for j, id in ipairs(ids) do
    batch_seats[first + j - 1] = id
    picked[first + j - 1] = infos[j]
  end
  return first, #batch_seats
end

-- { code, seatId, … }: the seats batch_seats[first..last] for which `bad` holds.
local function seat_refusal(code, first, last, bad)
  local out = { code }
  for s = first, last do
    if bad(s) then out[#out + 1] = batch_seats[s] end
  end
  return out
end

-- Request r: its seats are batch_seats[firsts[r]..lasts[r]], or wants[r] chosen here.
local function hold(r)
  local token, user = tokens[r], users[r]
  if not cfg[1] then return { 'SCHEDULE_NOT_FOUND' } end
  local refusal = token_refusal(tokens_seen, KEYS[2], token, user, now)
    or rate_refusal(rate_keys, user, now, cfg[5])
  if refusal then return { refusal } end
  if now < opens then return { 'BOOKING_NOT_OPEN' } end
  if now >= closes then return { 'BOOKING_CLOSED' } end

  local have = seats_of(user)
  local first, last, info
  if wants[r] then
    if have + wants[r] > limit then return { 'SEAT_LIMIT_EXCEEDED' } end
    first, last = choose_best(wants[r])
    if not first then return { 'NOT_ENOUGH_SEATS', last } end
    info = picked
  else
    first, last = firsts[r], lasts[r]
    if not seat_info then read_seats() end
    for s = first, last do
      if unknown(s) then return seat_refusal('SEAT_NOT_FOUND', first, last, unknown) end
    end
    if have + last - first + 1 > limit then return { 'SEAT_LIMIT_EXCEEDED' } end
    for s = first, last do
      if taken(s) then return seat_refusal('SEAT_ALREADY_RESERVED', first, last, taken) end
    end
    info = seat_info
  end
  local n = last - first + 1

  seq = seq + 1
  local id = string.format('%d', id_base + seq)
  local total, priced = 0, nil
  local out = { 'OK', id, 0, now_s, expires_s }
  for s = first, last do
    local seat = batch_seats[s]
    local number, price = string.match(info[s], '^([^|]*)|([^|]*)$')
    total = total + tonumber(price)
    out[#out + 1] = seat .. '|' .. number .. '|' .. price
    priced = priced and priced .. ',' .. seat .. ':' .. price or seat .. ':' .. price
    held[seat] = true
    held_seats[#held_seats + 1] = seat
  end
  out[3] = total
  stage_record(id, new_hold_record(user, string.format('%d', total), now_s, expires_s, priced))
  expiries[#expiries + 1] = expires_s
  expiries[#expiries + 1] = id
  user_seats[user] = have + n
  if not new_holds[user] then users_held[#users_held + 1] = user end
  new_holds[user] = (new_holds[user] or 0) + 1
  held_delta = held_delta + n
  return out
end

-- Writes what the batch changed: the seats held, the sequence, counters and expiry index.
local function finish()
  if seq == first_seq then return end
  take_available(k, held_seats)
  redis.call('SET', KEYS[9], seq)
  local open = redis.call('HMGET', k.userholds, unpack(users_held))
  local seat_counts, hold_counts = {}, {}
  for i, user in ipairs(users_held) do
    seat_counts[2 * i - 1], seat_counts[2 * i] = user, user_seats[user]
    hold_counts[2 * i - 1], hold_counts[2 * i] = user, (tonumber(open[i]) or 0) + new_holds[user]
  end
  redis.call('HSET', k.userseats, unpack(seat_counts))
  redis.call('HSET', k.userholds, unpack(hold_counts))
  redis.call('HINCRBY', k.stats, 'heldSeats', held_delta)
  for i = 1, #expiries, 1000 do
    redis.call('ZADD', k.holds, unpack(expiries, i, math.min(i + 999, #expiries)))
  end
end

local DAY_MS = 24 * 3600 * 1000

-- The reply to request `r`, decided once per Idempotency-Key (checked first).
local function hold_once(r)
  local i = starts[r]
  local idem_index, fingerprint = tonumber(ARGV[i + 2]), ARGV[i + 3]
  if idem_index == 0 then return hold(r) end
  local idem = KEYS[idem_index]
  local seen = redis.call('GET', idem)
  if seen then
    local first_fingerprint, reply = string.match(seen, '^([^\n]*)\n(.*)$')
    if first_fingerprint ~= fingerprint then return { 'IDEMPOTENCY_KEY_REUSED' } end
    local out = {}
    for element in string.gmatch(reply, '[^,]+') do out[#out + 1] = element end
    return out
  end
  local out = hold(r)
  if keeps_outcome(out[1]) then
    redis.call('SET', idem, fingerprint .. '\n' .. table.concat(out, ','), 'PX', DAY_MS)
  end
  return out
end

local replies = {}
for r = 1, #starts do replies[r] = hold_once(r) end
finish()
publish_reservations(k)
rate_commit()
return replies
