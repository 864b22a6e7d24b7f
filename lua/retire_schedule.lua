-- uses: lib/clock.lua
-- Retires a schedule whose sale is over: a day past bookingCloseAt (so every Idempotency-Key
-- outcome that needs its records has expired), with no WAITING or ACTIVE token, no open hold
-- or payment, and its outbox drained (MySQL has everything). Its records leave Redis (reads
-- of them come from MySQL); what stays answers a late request: the settings and booking
-- window (issuance is BOOKING_CLOSED), the counters, the sequences (no id is handed out
-- twice) and the AVAILABLE seats (the catalogue's counts). seatrush then drops the schedule
-- from the registry the background loops serve (another slot, so not here).
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:active, KEYS[4] {s:S}:holds,
-- KEYS[5] {s:S}:sagas, KEYS[6] {s:S}:outbox, KEYS[7…] the keys that go
--
-- Returns 1 (retired, now or before) or 0 (still in use, or unknown)
local DAY_MS = 24 * 3600 * 1000
local cfg = redis.call('HMGET', KEYS[1], 'bookingCloseAt', 'retired')
if not cfg[1] then return 0 end
if cfg[2] == '1' then return 1 end
if now_ms() < tonumber(cfg[1]) + DAY_MS then return 0 end
for i = 2, 5 do
  if redis.call('ZCARD', KEYS[i]) > 0 then return 0 end
end
if redis.call('XLEN', KEYS[6]) > 0 then return 0 end
redis.call('UNLINK', unpack(KEYS, 7))
redis.call('HSET', KEYS[1], 'retired', '1')
return 1
