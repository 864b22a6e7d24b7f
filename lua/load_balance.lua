-- Puts a user's balance, as MySQL has it, into Redis unless Redis has it already (a charge
-- or debit that got there first is newer than MySQL).
--
-- KEYS[1] {w:n}:bal   HASH userId -> "balance|totalCharged|totalUsed|updatedAt"
-- ARGV[1] userId, ARGV[2] the record
--
-- Returns the record now in Redis.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
