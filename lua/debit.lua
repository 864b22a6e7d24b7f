-- uses: lib/clock.lua
-- Payment saga, step 2 of 3 (SPEC §6), in the user's wallet bucket: debits a reservation's
-- total from the balance at most once. The reservation's debit record says what happened to
-- it; a debit names the payment attempt it belongs to, and an attempt the saga gave up on
-- (see void_debit.lua) or that found too little money is fenced off, so a late call of it
-- debits nothing.
--
-- KEYS[1] {w:n}:bal     HASH userId -> "balance|totalCharged|totalUsed|updatedAt"
-- KEYS[2] {w:n}:txseq   ledger sequence of the bucket
-- KEYS[3] {w:n}:outbox  STREAM: `type ledger`, `tx:<id>` -> "userId|PAYMENT|amount|
--                       balanceAfter|reservationId|createdAt", `bal:<userId>` -> balance
-- KEYS[4] {w:n}:debit:<reservationId>  STRING "DEBIT|paymentId|transactionId|balanceAfter|at"
--                       or "VOID|paymentId", kept ARGV[7] ms
-- ARGV[1] userId, ARGV[2] reservationId, ARGV[3] paymentId (the attempt), ARGV[4] amount,
-- ARGV[5] bucket, ARGV[6] number of buckets (ledger ids are seq * buckets + bucket),
-- ARGV[7] how long debit records are kept (ms)
--
-- Returns {'DEBITED', paymentId, transactionId, balanceAfter, at} (now or before: the
--          paymentId is the attempt that debited)
--       | {'NOT_LOADED'} (load the balance, then retry) | {'INSUFFICIENT', balance}
--       | {'VOIDED'} (this attempt was given up)
local user, reservation, attempt, amount = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local keep = tonumber(ARGV[7])
local record = redis.call('GET', KEYS[4])
if record then
  local f = {}
  for field in string.gmatch(record, '[^|]+') do f[#f + 1] = field end
  if f[1] == 'DEBIT' then return { 'DEBITED', f[2], f[3], f[4], f[5] } end
  if f[2] == attempt then return { 'VOIDED' } end
end

local raw = redis.call('HGET', KEYS[1], user)
if not raw then return { 'NOT_LOADED' } end
local balance, charged, used = string.match(raw, '^(%d+)|(%d+)|(%d+)|')
balance = tonumber(balance)
if balance < amount then
  redis.call('SET', KEYS[4], 'VOID|' .. attempt, 'PX', keep)
  return { 'INSUFFICIENT', string.format('%.0f', balance) }
end
local now = now_ms()
balance = balance - amount
local tx = string.format('%.0f',
  redis.call('INCR', KEYS[2]) * tonumber(ARGV[6]) + tonumber(ARGV[5]))
local state = string.format('%.0f|%s|%.0f|%.0f', balance, charged, tonumber(used) + amount, now)
redis.call('HSET', KEYS[1], user, state)
redis.call('XADD', KEYS[3], '*', 'type', 'ledger',
  'tx:' .. tx, string.format('%s|PAYMENT|%.0f|%.0f|%s|%.0f', user, amount, balance, reservation,
    now),
  'bal:' .. user, state)
local after, at = string.format('%.0f', balance), string.format('%.0f', now)
redis.call('SET', KEYS[4], table.concat({ 'DEBIT', attempt, tx, after, at }, '|'), 'PX', keep)
return { 'DEBITED', attempt, tx, after, at }
