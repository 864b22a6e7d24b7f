-- Payment saga settlement, in the user's wallet bucket: for an attempt whose request died or
-- gave up, says whether the reservation was debited and, if not, fences the attempt off so
-- that its debit (debit.lua), should it still arrive, debits nothing. The fence is the
-- highest attempt voided: it covers every earlier attempt too (attempt ids only grow), so a
-- later void of an earlier attempt does not lower it. The caller then commits the payment or
-- rolls it back accordingly (src/payment/saga.rs).
--
-- KEYS[1] {w:n}:debit:<reservationId>  (see debit.lua)
-- ARGV[1] paymentId (the attempt), ARGV[2] how long the record is kept (ms)
--
-- Returns {'DEBITED', paymentId, transactionId, balanceAfter, at} | {'VOIDED'}
local record = redis.call('GET', KEYS[1])
local fence = ARGV[1]
if record then
  local f = {}
  for field in string.gmatch(record, '[^|]+') do f[#f + 1] = field end
  if f[1] == 'DEBIT' then return { 'DEBITED', f[2], f[3], f[4], f[5] } end
  if tonumber(f[2]) > tonumber(fence) then fence = f[2] end
end
redis.call('SET', KEYS[1], 'VOID|' .. fence, 'PX', tonumber(ARGV[2]))
return { 'VOIDED' }
