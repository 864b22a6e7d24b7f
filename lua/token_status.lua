-- uses: lib/clock.lua lib/queue.lua
-- Reads a token's live state: the Queue-Token check every authorised endpoint builds on.
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:tokens
-- ARGV[1] token
--
-- Returns {'OK', userId, status, position, waitMinutes, issuedAt, activatedAt, expiresAt}
--      or {'QUEUE_TOKEN_INVALID'} (unknown, ended, or past its time)
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then return { 'QUEUE_TOKEN_INVALID' } end
local t = decode_token(raw)
local now = now_ms()
if not is_live(t, now) then return { 'QUEUE_TOKEN_INVALID' } end

local position = 0
if t.status == 'WAITING' then
  local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
  if not rank then return { 'QUEUE_TOKEN_INVALID' } end
  position = rank + 1
end
local rates = redis.call('HMGET', KEYS[1], 'measuredRate', 'admissionPerSecond')
return { 'OK', t.user, t.status, position, wait_minutes(position, rates[1], rates[2]),
         t.iat, t.aat, t.exp }
