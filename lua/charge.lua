-- uses: lib/clock.lua
-- Charges a user's prepaid balance: the balance and its running sums, a ledger entry and the
-- outbox entry change together, in the user's wallet bucket.
--
-- KEYS[1] {w:n}:bal     HASH userId -> "balance|totalCharged|totalUsed|updatedAt"
-- KEYS[2] {w:n}:txseq   ledger sequence of the bucket
-- KEYS[3] {w:n}:outbox  STREAM: `type ledger`, then `tx:<id>` -> "userId|CHARGE|amount|
--                       balanceAfter|refId|createdAt" and `bal:<userId>` -> balance record
-- KEYS[4] {w:n}:idem:<userId>:<Idempotency-Key>   only when the request has one: the first
--                       outcome for that key, "fingerprint|outcome", kept 24 h
-- ARGV[1] userId, ARGV[2] amount, ARGV[3] the highest balance allowed,
-- ARGV[4] bucket, ARGV[5] number of buckets (ledger ids are seq * buckets + bucket),
-- ARGV[6] the request's fingerprint (with KEYS[4]), ARGV[7] 'replay' to only look for the
-- key's first outcome (seatrush replays it before it checks the Queue-Token), else 'charge'
--
-- Returns {'OK', transactionId, balance, chargedAt} | {'NOT_LOADED'} (load it, then retry)
--       | {'NOTHING_KEPT'} (replay only: the key has no outcome yet)
--       | {'BALANCE_LIMIT'} | {'REPLAY', outcome} (the key's first outcome, as
--         'OK|transactionId|balance|chargedAt' or 'BALANCE_LIMIT')
--       | {'IDEMPOTENCY_KEY_REUSED'} (the key was first used for another request)
local DAY_MS = 24 * 3600 * 1000
local idem = KEYS[4]
if idem then
  local seen = redis.call('GET', idem)
  if seen then
    local fingerprint, outcome = string.match(seen, '^([^|]*)|(.*)$')
    if fingerprint ~= ARGV[6] then return { 'IDEMPOTENCY_KEY_REUSED' } end
    return { 'REPLAY', outcome }
  end
end
if ARGV[7] == 'replay' then return { 'NOTHING_KEPT' } end
local function remember(outcome)
  if idem then redis.call('SET', idem, ARGV[6] .. '|' .. outcome, 'PX', DAY_MS) end
end

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return { 'NOT_LOADED' } end
local balance, charged, used = string.match(raw, '^(%d+)|(%d+)|(%d+)|')
local amount = tonumber(ARGV[2])
balance = tonumber(balance) + amount
if balance > tonumber(ARGV[3]) then
  remember('BALANCE_LIMIT')
  return { 'BALANCE_LIMIT' }
end
local now = now_ms()
local tx = string.format('%.0f',
  redis.call('INCR', KEYS[2]) * tonumber(ARGV[5]) + tonumber(ARGV[4]))
local record = string.format('%.0f|%.0f|%s|%.0f', balance, tonumber(charged) + amount, used, now)
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('XADD', KEYS[3], '*', 'type', 'ledger',
  'tx:' .. tx, string.format('%s|CHARGE|%s|%.0f||%.0f', ARGV[1], ARGV[2], balance, now),
  'bal:' .. ARGV[1], record)
local charged_at = string.format('%.0f', now)
remember(string.format('OK|%s|%.0f|%s', tx, balance, charged_at))
return { 'OK', tx, balance, charged_at }
