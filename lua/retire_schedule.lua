-- uses: lib/clock.lua
-- Settles a schedule whose sale may be over. Past bookingCloseAt nobody can queue (issuance
-- is BOOKING_CLOSED) and so nobody can hold or pay either: once it also has no WAITING or
-- ACTIVE token, no open hold or payment, its outbox drained (MySQL has everything) and no
-- ended record left to remove, nothing can happen to it any more, and the background loops
-- stop serving it (seatrush keeps it aside until it may be retired; another slot, so not
-- here). A day past bookingCloseAt (so every Idempotency-Key outcome that needs its records
-- has expired) it is retired: its records leave Redis (reads of them come from MySQL); what
-- stays answers a late request: the settings and booking window (issuance is
-- BOOKING_CLOSED), the counters, the sequences (no id is handed out twice) and the AVAILABLE
-- seats (the catalogue's counts).
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:active, KEYS[4] {s:S}:holds,
-- KEYS[5] {s:S}:sagas, KEYS[6] {s:S}:ended, KEYS[7] {s:S}:rended, KEYS[8] {s:S}:outbox,
-- KEYS[9…] the other keys that go
--
-- Returns 1 (retired, now or before), 0 (in use: before its close, or something is live,
-- unflushed or waiting to be removed; or unknown), or the time (ms) from which it may be
-- retired, when nothing can happen to it until then
local DAY_MS = 24 * 3600 * 1000
local cfg = redis.call('HMGET', KEYS[1], 'bookingCloseAt', 'retired')
if not cfg[1] then return 0 end
if cfg[2] == '1' then return 1 end
local now, close = now_ms(), tonumber(cfg[1])
if now < close then return 0 end
for i = 2, 5 do
  if redis.call('ZCARD', KEYS[i]) > 0 then return 0 end
end
if redis.call('XLEN', KEYS[8]) > 0 then return 0 end
if now < close + DAY_MS then
  -- Ended records leave after their keep period, through the loops that serve it.
  if redis.call('ZCARD', KEYS[6]) > 0 or redis.call('ZCARD', KEYS[7]) > 0 then return 0 end
  return close + DAY_MS
end
redis.call('UNLINK', KEYS[6], KEYS[7], unpack(KEYS, 9))
redis.call('HSET', KEYS[1], 'retired', '1')
return 1
