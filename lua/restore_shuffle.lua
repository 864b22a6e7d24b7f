-- Brings a schedule's queue order forwards to the opening's shuffle MySQL holds, when Redis
-- came back older than MySQL (src/reconcile.rs) and does not have that shuffle in force:
-- the stored seed and range become MySQL's and the shuffle is marked not done, with its
-- cursor at the start, so the admission tick (which admits nobody meanwhile, and shows the
-- pre-queue no positions) applies MySQL's places again, chunk by chunk
-- (lua/shuffle_begin.lua finds them stored and carries on; lua/shuffle_apply.lua).
--
-- KEYS[1] {s:S}:cfg
-- ARGV[1] MySQL's seed, ARGV[2] first, ARGV[3] last
--
-- Returns 1 if the shuffle was put back to be applied, 0 if it is in force already (or the
-- schedule is unknown)
local c = redis.call('HMGET', KEYS[1], 'bookingOpenAt', 'shuffleSeed', 'shuffledAt')
if not c[1] or (c[2] == ARGV[1] and c[3]) then return 0 end
redis.call('HSET', KEYS[1], 'shuffleSeed', ARGV[1], 'shuffleFirst', ARGV[2],
  'shuffleLast', ARGV[3], 'shuffleCursor', ARGV[2])
redis.call('HDEL', KEYS[1], 'shuffledAt')
return 1
