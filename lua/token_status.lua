-- uses: lib/clock.lua lib/queue.lua
-- Reads tokens' live state: the Queue-Token check every authorised endpoint builds on, for
-- a batch of tokens of one schedule (seatrush coalesces concurrent checks; see
-- src/redis/coalesce.rs).
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:tokens
-- ARGV    the tokens
--
-- Returns per token "OK|userId|status|position|waitMinutes|issuedAt|activatedAt|expiresAt"
--      or "QUEUE_TOKEN_INVALID" (unknown, ended, or past its time)
local now = now_ms()
local records = redis.call('HMGET', KEYS[3], unpack(ARGV))
local rates
local out = {}
for i = 1, #ARGV do
  local raw = records[i]
  local t = raw and decode_token(raw)
  local reply = 'QUEUE_TOKEN_INVALID'
  if t and is_live(t, now) then
    local position = 0
    local rank = true
    if t.status == 'WAITING' then
      rank = redis.call('ZRANK', KEYS[2], ARGV[i])
      position = rank and rank + 1 or 0
    end
    if rank then
      rates = rates or redis.call('HMGET', KEYS[1], 'measuredRate', 'admissionPerSecond')
      reply = table.concat({ 'OK', t.user, t.status, position,
        wait_minutes(position, rates[1], rates[2]), t.iat, t.aat, t.exp }, '|')
    end
  end
  out[i] = reply
end
return out
