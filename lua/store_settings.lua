-- Writes a schedule's queue settings into its cfg hash (in force from the next tick). A
-- change of the queue's order (queueOrder, preQueueMinutes) is refused while the schedule
-- has a live token: its place was decided under the order in force.
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:active
-- ARGV[1] '1' if the change touches queueOrder or preQueueMinutes, else '0'; then field,
-- value, … (every setting)
--
-- Returns 1 (written), 0 (the order is locked: nothing written), -1 (no such schedule)
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] == '1' and redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]) > 0 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
