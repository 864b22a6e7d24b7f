-- uses: lib/clock.lua lib/holds.lua
-- Cancels a RESERVED hold for its owner: the reservation becomes CANCELLED and its seats
-- AVAILABLE again. Atomic with hold expiry, so exactly one of the two ends a hold.
--
-- KEYS[1] {s:S}:res, KEYS[2] {s:S}:holds, KEYS[3] {s:S}:avail, KEYS[4] {s:S}:userseats,
-- KEYS[5] {s:S}:stats, KEYS[6] {s:S}:outbox, KEYS[7] {s:S}:userholds, KEYS[8] {s:S}:rended,
-- KEYS[9] {s:S}:seat
-- ARGV[1] reservationId, ARGV[2] userId (the caller)
--
-- Returns {'OK', record} | {'RESERVATION_NOT_FOUND'} (never held, or its ended record has left
--         Redis) | {'FORBIDDEN'}
--       | {'PAYMENT_IN_PROGRESS'} | {'RESERVATION_NOT_CANCELLABLE'}
local k = { res = KEYS[1], holds = KEYS[2], avail = KEYS[3], userseats = KEYS[4],
            stats = KEYS[5], outbox = KEYS[6], userholds = KEYS[7], rended = KEYS[8],
            seat = KEYS[9] }
local id, user = ARGV[1], ARGV[2]
local raw = redis.call('HGET', k.res, id)
if not raw then return { 'RESERVATION_NOT_FOUND' } end
local r = decode_reservation(raw)
if r.user ~= user then return { 'FORBIDDEN' } end
if r.status == 'PAYING' then return { 'PAYMENT_IN_PROGRESS' } end
if r.status ~= 'RESERVED' then return { 'RESERVATION_NOT_CANCELLABLE' } end
local now = now_ms()
release_hold(k, id, r, now, 'CANCELLED')
publish_reservations(k)
return { 'OK', encode_reservation(r) }
