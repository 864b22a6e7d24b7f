-- uses: lib/clock.lua
-- Payment saga, step 2 of 3 (see src/payment/saga.rs), in a wallet bucket: debits a
-- reservation's total from its user's balance at most once. The reservation's debit record
-- says what happened to it; a debit names the payment attempt it belongs to, and an attempt
-- the saga gave up on (see void_debit.lua) or that found too little money is fenced off, with
-- every earlier attempt of the reservation (attempt ids only grow), so a late call of any of
-- them debits nothing. Takes a batch of debits of one bucket and decides them in order
-- (seatrush coalesces concurrent requests; see src/redis/coalesce.rs).
--
-- KEYS[1] {w:n}:bal     HASH userId -> "balance|totalCharged|totalUsed|updatedAt"
-- KEYS[2] {w:n}:txseq   ledger sequence of the bucket
-- KEYS[3] {w:n}:outbox  STREAM: `type ledger`, `tx:<id>` -> "userId|PAYMENT|amount|
--                       balanceAfter|reservationId|createdAt" per debit, `bal:<userId>` ->
--                       the balance after the batch, one entry per batch
-- KEYS[3 + i] {w:n}:debit:<reservationId> of the i-th debit: STRING
--                       "DEBIT|paymentId|transactionId|balanceAfter|at" or "VOID|paymentId"
--                       (that attempt and all before it are fenced off), kept ARGV[3] ms
-- ARGV[1] bucket, ARGV[2] number of buckets (ledger ids are seq * buckets + bucket),
-- ARGV[3] how long debit records are kept (ms), then per debit: userId, reservationId,
-- paymentId (the attempt), amount
--
-- Returns one reply per debit, in order:
--         {'DEBITED', paymentId, transactionId, balanceAfter, at} (now or before: the
--          paymentId is the attempt that debited)
--       | {'NOT_LOADED'} (load the balance, then retry) | {'INSUFFICIENT', balance}
--       | {'VOIDED'} (this attempt was given up)
local keep = tonumber(ARGV[3])
local now = now_ms()
local at = string.format('%.0f', now)
local seq = tonumber(redis.call('GET', KEYS[2])) or 0
local first_seq = seq
-- Balances the batch changed (userId -> record) in the order first changed, and its
-- ledger lines as outbox fields.
local balances, changed, ledger = {}, {}, {}

local function debit(key, user, reservation, attempt, amount)
  local record = redis.call('GET', key)
  if record then
    local f = {}
    for field in string.gmatch(record, '[^|]+') do f[#f + 1] = field end
    if f[1] == 'DEBIT' then return { 'DEBITED', f[2], f[3], f[4], f[5] } end
    if tonumber(attempt) <= tonumber(f[2]) then return { 'VOIDED' } end
  end

  local raw = balances[user] or redis.call('HGET', KEYS[1], user)
  if not raw then return { 'NOT_LOADED' } end
  local balance, charged, used = string.match(raw, '^(%d+)|(%d+)|(%d+)|')
  balance = tonumber(balance)
  if balance < amount then
    redis.call('SET', key, 'VOID|' .. attempt, 'PX', keep)
    return { 'INSUFFICIENT', string.format('%.0f', balance) }
  end
  balance = balance - amount
  seq = seq + 1
  local tx = string.format('%.0f', seq * tonumber(ARGV[2]) + tonumber(ARGV[1]))
  if not balances[user] then changed[#changed + 1] = user end
  balances[user] = string.format('%.0f|%s|%.0f|%s', balance, charged, tonumber(used) + amount, at)
  ledger[#ledger + 1] = 'tx:' .. tx
  ledger[#ledger + 1] = string.format('%s|PAYMENT|%.0f|%.0f|%s|%s', user, amount, balance,
    reservation, at)
  local after = string.format('%.0f', balance)
  redis.call('SET', key, table.concat({ 'DEBIT', attempt, tx, after, at }, '|'), 'PX', keep)
  return { 'DEBITED', attempt, tx, after, at }
end

local replies = {}
for i = 4, #ARGV, 4 do
  local n = #replies + 1
  replies[n] = debit(KEYS[3 + n], ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]))
end
if seq > first_seq then
  redis.call('SET', KEYS[2], seq)
  local fields = { 'type', 'ledger' }
  for _, line in ipairs(ledger) do fields[#fields + 1] = line end
  local hset = {}
  for _, user in ipairs(changed) do
    fields[#fields + 1] = 'bal:' .. user
    fields[#fields + 1] = balances[user]
    hset[#hset + 1] = user
    hset[#hset + 1] = balances[user]
  end
  redis.call('HSET', KEYS[1], unpack(hset))
  redis.call('XADD', KEYS[3], '*', unpack(fields))
end
return replies
