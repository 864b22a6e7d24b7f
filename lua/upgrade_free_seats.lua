-- uses: lib/clock.lua lib/holds.lua
-- Moves a schedule's AVAILABLE seats from the unordered SET seatrush kept before into the
-- ZSET ordered by seat number (lib/holds.lua), in one step, so no hold sees half of them.
-- Runs at start-up for every schedule Redis has; a schedule already moved costs one EXISTS.
--
-- KEYS[1] {s:S}:avail  SET of AVAILABLE seat ids (removed), KEYS[2] {s:S}:free  the ZSET,
-- KEYS[3] {s:S}:seat   HASH seatId -> "seatNumber|price"
-- KEYS[4] {s:S}:stats  (the seat-state version moves)
--
-- Returns the number of seats moved (0: nothing to move).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ids = redis.call('SMEMBERS', KEYS[1])
make_available({ avail = KEYS[2], seat = KEYS[3], stats = KEYS[4] }, ids)
redis.call('DEL', KEYS[1])
return #ids
