-- uses: lib/clock.lua lib/rate.lua
-- Counts a request no other script runs for (the caller's own reservations, read from MySQL)
-- against the caller's request rate, in their wallet bucket's slot: a caller past their rate
-- is refused before MySQL is asked.
--
-- KEYS[1], KEYS[2] {w:B}:rate:0, {w:B}:rate:1  per-user request rates (lib/rate.lua)
-- ARGV[1] userId (the caller), ARGV[2] requests a second allowed
--
-- Returns {'OK'} | {'RATE_LIMITED'}
local limited = rate_refusal({ KEYS[1], KEYS[2] }, ARGV[1], now_ms(), ARGV[2])
rate_commit()
return { limited or 'OK' }
