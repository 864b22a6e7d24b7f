-- uses: lib/clock.lua
-- Starts (or finds) the opening's shuffle of a SHUFFLE_AT_OPEN queue's pre-queue: the first
-- caller after bookingOpenAt stores its seed and the range of sequences the pre-queue took
-- (lua/issue_tokens.lua keeps it); a later caller (another instance, or this one after a
-- failure) gets the stored ones and goes on from where the shuffle stands. seatrush derives
-- the permutation from the seed and applies it chunk by chunk (lua/shuffle_apply.lua).
--
-- KEYS[1] {s:S}:cfg
-- ARGV[1] a new seed (hex, drawn from the operating system), used if none is stored
--
-- Returns {'NONE'} (not a shuffled queue, shuffled already, or before the opening)
--      or {'RUN', seed, first, last, cursor, 1 if this call stored the seed else 0}
--         (a pre-queue nobody joined is the empty range first = 1, last = 0)
local c = redis.call('HMGET', KEYS[1], 'queueOrder', 'shuffledAt', 'bookingOpenAt',
  'shuffleSeed', 'shuffleFirst', 'shuffleLast', 'shuffleCursor', 'preQueueFirst',
  'preQueueLast')
if c[1] ~= 'SHUFFLE_AT_OPEN' or c[2] or now_ms() < tonumber(c[3]) then return { 'NONE' } end
if c[4] then return { 'RUN', c[4], c[5], c[6], c[7], 0 } end
local first, last = c[8] or '1', c[9] or '0'
redis.call('HSET', KEYS[1], 'shuffleSeed', ARGV[1], 'shuffleFirst', first, 'shuffleLast', last,
  'shuffleCursor', first)
return { 'RUN', ARGV[1], first, last, first, 1 }
