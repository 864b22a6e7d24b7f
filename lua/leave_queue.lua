-- uses: lib/clock.lua lib/queue.lua lib/holds.lua lib/rate.lua
-- The caller leaves the queue: its live token ends as LEFT, which frees its WAITING place or
-- its ACTIVE slot at once, and its RESERVED holds of the schedule end as CANCELLED (their
-- seats AVAILABLE again). While one of its holds is being paid nothing changes: the payment
-- decides first. Counts against the caller's request rate.
--
-- The caller's holds are found by reading the schedule's open holds, which are at most
-- maxActiveUsers × maxSeatsPerUser; a caller with none (userholds) reads nothing.
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:active, KEYS[4] {s:S}:tokens,
-- KEYS[5] {s:S}:users, KEYS[6] {s:S}:stats, KEYS[7] {s:S}:ended, KEYS[8] {s:S}:outbox,
-- KEYS[9], KEYS[10] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua),
-- KEYS[11] {s:S}:res, KEYS[12] {s:S}:holds, KEYS[13] {s:S}:avail, KEYS[14] {s:S}:userseats,
-- KEYS[15] {s:S}:userholds, KEYS[16] {s:S}:rended, KEYS[17] {s:S}:seat
-- ARGV[1] the token (its sequence), ARGV[2] userId (the caller)
--
-- Returns {'OK', holds released} | {'QUEUE_TOKEN_INVALID'} (unknown, ended, or past its time)
--       | {'FORBIDDEN'} (another user's) | {'RATE_LIMITED'} | {'PAYMENT_IN_PROGRESS'}
local k = { waiting = KEYS[2], active = KEYS[3], tokens = KEYS[4], users = KEYS[5],
            stats = KEYS[6], ended = KEYS[7], outbox = KEYS[8], res = KEYS[11],
            holds = KEYS[12], avail = KEYS[13], userseats = KEYS[14], userholds = KEYS[15],
            rended = KEYS[16], seat = KEYS[17] }
local token, user = ARGV[1], ARGV[2]
local now = now_ms()

-- The reply; a refusal changes nothing but the request count.
local function leave()
  local raw = redis.call('HGET', k.tokens, token)
  local t = raw and decode_token(raw)
  if not t or not is_live(t, now) then return { 'QUEUE_TOKEN_INVALID' } end
  if t.user ~= user then return { 'FORBIDDEN' } end
  local limited = rate_refusal({ KEYS[9], KEYS[10] }, user, now,
    redis.call('HGET', KEYS[1], 'userRequestsPerSecond'))
  if limited then return { limited } end

  -- The caller's open holds (RESERVED or PAYING), read 500 at a time.
  local mine = {}
  local open = tonumber(redis.call('HGET', k.userholds, user)) or 0
  if open > 0 then
    local ids = redis.call('ZRANGE', k.holds, 0, -1)
    for i = 1, #ids, 500 do
      local last = math.min(i + 499, #ids)
      local records = redis.call('HMGET', k.res, unpack(ids, i, last))
      for j = i, last do
        local record = records[j - i + 1]
        if record and string.match(record, '^(%d+)|') == user then
          local r = decode_reservation(record)
          if r.status == 'PAYING' then return { 'PAYMENT_IN_PROGRESS' } end
          mine[#mine + 1] = { ids[j], r }
        end
      end
      if #mine >= open then break end
    end
  end

  for _, hold in ipairs(mine) do release_hold(k, hold[1], hold[2], now, 'CANCELLED') end
  publish_reservations(k)
  end_token(k, token, t, now, 'LEFT')
  publish_tokens(k)
  return { 'OK', #mine }
end

local reply = leave()
rate_commit()
return reply
