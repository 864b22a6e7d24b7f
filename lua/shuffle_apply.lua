-- uses: lib/clock.lua
-- One chunk of the opening's shuffle (lua/shuffle_begin.lua): the pre-queue tokens of
-- sequences cursor, cursor + 1, … take the places seatrush derived from the stored seed (a
-- place is a sequence of the pre-queue's range, so every pre-queue token stays ahead of every
-- later arrival while the chunks run). A token no longer WAITING is skipped. Nobody is told a
-- place, and nobody is admitted, until the last chunk marks the queue shuffled (shuffledAt)
-- and appends the shuffle to the outbox for MySQL.
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:outbox
-- ARGV[1] the seed, ARGV[2] the cursor this chunk starts at, ARGV[3…] the places of the
-- sequences from the cursor on, in order
--
-- Returns {'AT', cursor} (the next chunk starts there; a chunk that did not start at the
-- stored cursor changes nothing) | {'DONE', shuffledAt} | {'STALE'} (another seed, or done)
local c = redis.call('HMGET', KEYS[1], 'shuffleSeed', 'shuffleCursor', 'shuffleFirst',
  'shuffleLast', 'shuffledAt')
if c[1] ~= ARGV[1] or c[5] then return { 'STALE' } end
if c[2] ~= ARGV[2] then return { 'AT', c[2] } end
local from, n = tonumber(ARGV[2]), #ARGV - 2
if n > 0 then
  local places = {}
  for i = 1, n do
    places[2 * i - 1] = ARGV[i + 2]
    places[2 * i] = string.format('%d', from + i - 1)
  end
  redis.call('ZADD', KEYS[2], 'XX', unpack(places))
end
local cursor = string.format('%d', from + n)
if from + n <= tonumber(c[4]) then
  redis.call('HSET', KEYS[1], 'shuffleCursor', cursor)
  return { 'AT', cursor }
end
local now = string.format('%d', now_ms())
redis.call('HSET', KEYS[1], 'shuffleCursor', cursor, 'shuffledAt', now)
redis.call('XADD', KEYS[3], '*', 'type', 'shuffle', 'seed', ARGV[1], 'first', c[3],
  'last', c[4], 'at', now)
return { 'DONE', now }
