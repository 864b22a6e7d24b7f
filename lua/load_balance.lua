-- Puts a user's balance, as MySQL has it, into Redis unless Redis has it already (a charge
-- or debit that got there first is newer than MySQL), and raises the bucket's ledger sequence
-- to the floor MySQL's ledger implies, so a Redis that lost its data never hands out a
-- ledger id MySQL already holds.
--
-- KEYS[1] {w:n}:bal     HASH userId -> "balance|totalCharged|totalUsed|updatedAt"
-- KEYS[2] {w:n}:txseq   ledger sequence of the bucket
-- ARGV[1] userId, ARGV[2] the record, ARGV[3] the lowest ledger sequence allowed
--
-- Returns the record now in Redis.
if (tonumber(redis.call('GET', KEYS[2])) or 0) < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
