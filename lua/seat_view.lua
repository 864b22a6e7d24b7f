-- uses: lib/clock.lua lib/queue.lua
-- The seat listing's one round trip: checks that the token is an ACTIVE token of this
-- schedule and returns the schedule's AVAILABLE seat ids.
--
-- KEYS[1] {s:S}:tokens   HASH token -> record
-- KEYS[2] {s:S}:avail    SET of AVAILABLE seat ids
-- ARGV[1] token
--
-- Returns {'OK', 'seatId,seatId,…'} | {'TOKEN_NOT_HERE'} (not a token of this schedule)
--       | {'QUEUE_TOKEN_INVALID'} | {'QUEUE_TOKEN_NOT_ACTIVE'}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return { 'TOKEN_NOT_HERE' } end
local t = decode_token(raw)
if not is_live(t, now_ms()) then return { 'QUEUE_TOKEN_INVALID' } end
if t.status ~= 'ACTIVE' then return { 'QUEUE_TOKEN_NOT_ACTIVE' } end
-- One string rather than one reply element per seat: far cheaper to encode and decode.
return { 'OK', table.concat(redis.call('SMEMBERS', KEYS[2]), ',') }
