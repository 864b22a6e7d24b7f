-- Moves balances in Redis forwards to what MySQL already holds, when Redis came back older
-- than MySQL (src/reconcile.rs). A balance's sums only grow, so the state with the larger
-- totalCharged + totalUsed is the newer; a user Redis has no balance for loads it from MySQL
-- on first use and is left alone.
--
-- KEYS[1]: a wallet bucket's balances hash
-- ARGV: userId, MySQL's record ("balance|totalCharged|totalUsed|updatedAt"), …
--
-- Returns how many balances were moved forwards.
local function progress(record)
  local _, charged, used = string.match(record, '^(%d+)|(%d+)|(%d+)|')
  return tonumber(charged) + tonumber(used)
end

local moved = 0
for i = 1, #ARGV, 2 do
  local user, stored = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], user)
  if current and progress(current) < progress(stored) then
    redis.call('HSET', KEYS[1], user, stored)
    moved = moved + 1
  end
end
return moved
