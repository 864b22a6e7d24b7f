-- uses: lib/queue.lua
-- One round of the queue's event streams on a seatrush instance (src/queue/events.rs): for
-- the tokens of one schedule that the instance streams to, what changed, read in one call
-- for all of them. Reads only.
--
-- A WAITING token's score in the queue is its place: its arrival sequence, or in a shuffled
-- pre-queue the sequence the shuffle gave it (lua/shuffle_apply.lua). The queue is in order
-- of places, so every WAITING token whose place is below the head's has been admitted or has
-- ended: the caller passes the streamed tokens near the head (or past it) to learn which,
-- and the ones whose position is due to learn their place.
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:tokens
-- ARGV    per token: 'c<seq>' (its state, if it is no longer WAITING) or 'r<seq>' (its
--         state, and its place if it still is)
--
-- Returns { head: the place at the head of the queue (0: nobody waits), waiting count,
--           admissions a second to estimate waits with, admissionPerSecond,
--           the order: '' (arrival order), 'PENDING' (a pre-queue not shuffled yet) or
--           'seed|first|last' (the shuffle that placed the pre-queue),
--           then per token: '<seq>|WAITING|<position>' ('r'; a 'c' token still waiting has
--           no position: '<seq>|WAITING|'), '<seq>|ACTIVE|<expiresAt>|<activatedAt>',
--           '<seq>|<ended status>|', or '<seq>|GONE|' (no record: it ended long ago) }
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local head_place = tonumber(head[2]) or math.huge
local cfg = redis.call('HMGET', KEYS[1], 'measuredRate', 'admissionPerSecond', 'queueOrder',
  'shuffledAt', 'shuffleSeed', 'shuffleFirst', 'shuffleLast')
local order = ''
if cfg[4] and cfg[5] then
  order = cfg[5] .. '|' .. cfg[6] .. '|' .. cfg[7]
elseif cfg[3] == 'SHUFFLE_AT_OPEN' then
  order = 'PENDING'
end
local out = { tonumber(head[2]) or 0, redis.call('ZCARD', KEYS[2]),
              tostring(estimate_rate(cfg[1], cfg[2]) or 0), cfg[2] or '0', order }
-- Outside the shuffled range a token's place is its sequence.
local shuffled_first, shuffled_last = tonumber(cfg[6]) or 1, tonumber(cfg[7]) or 0

for _, item in ipairs(ARGV) do
  local kind, seq = string.sub(item, 1, 1), string.sub(item, 2)
  local n = tonumber(seq)
  local waiting = false
  if (n >= shuffled_first and n <= shuffled_last) or n >= head_place then
    if kind == 'r' then
      local rank = redis.call('ZRANK', KEYS[2], seq)
      if rank then
        out[#out + 1] = seq .. '|WAITING|' .. tostring(rank + 1)
        waiting = true
      end
    elseif redis.call('ZSCORE', KEYS[2], seq) then
      out[#out + 1] = seq .. '|WAITING|'
      waiting = true
    end
  end
  if not waiting then
    local raw = redis.call('HGET', KEYS[3], seq)
    if not raw then
      out[#out + 1] = seq .. '|GONE|'
    else
      local t = decode_token(raw)
      if t.status == 'ACTIVE' then
        out[#out + 1] = seq .. '|ACTIVE|' .. t.exp .. '|' .. t.aat
      elseif t.status == 'WAITING' then
        -- Past a day, not yet swept: it has ended for every reader.
        out[#out + 1] = seq .. '|EXPIRED|'
      else
        out[#out + 1] = seq .. '|' .. t.status .. '|'
      end
    end
  end
end
return out
