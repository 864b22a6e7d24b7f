-- uses: lib/clock.lua lib/queue.lua lib/rate.lua
-- Reads tokens' live state: the Queue-Token check every authorised endpoint builds on, for
-- a batch of tokens of one schedule (seatrush coalesces concurrent checks; see
-- src/redis/coalesce.rs). A check made for a request that counts against its user's request
-- rate (every one but the status endpoint's) is counted here.
--
-- KEYS[1] {s:S}:cfg, KEYS[2] {s:S}:waiting, KEYS[3] {s:S}:tokens,
-- KEYS[4], KEYS[5] {s:S}:rate:0, {s:S}:rate:1  per-user request rates (lib/rate.lua)
-- ARGV    per token: the token, 1 to count the request against its user's rate (else 0)
--
-- Returns per token "OK|userId|status|position|waitMs|issuedAt|activatedAt|expiresAt"
--      or "QUEUE_TOKEN_INVALID" (unknown, ended, or past its time)
--      or "RATE_LIMITED" (a live token whose user's userRequestsPerSecond is spent)
local now = now_ms()
local n = #ARGV / 2
local tokens = {}
for i = 1, n do tokens[i] = ARGV[2 * i - 1] end
local records = redis.call('HMGET', KEYS[3], unpack(tokens))
local rate_keys = { KEYS[4], KEYS[5] }
local cfg
local out = {}
for i = 1, n do
  local raw = records[i]
  local t = raw and decode_token(raw)
  local reply = 'QUEUE_TOKEN_INVALID'
  if t and is_live(t, now) then
    local position = 0
    local rank = true
    if t.status == 'WAITING' then
      rank = redis.call('ZRANK', KEYS[2], tokens[i])
      position = rank and rank + 1 or 0
    end
    if rank then
      cfg = cfg or redis.call('HMGET', KEYS[1], 'measuredRate', 'admissionPerSecond',
        'userRequestsPerSecond')
      if ARGV[2 * i] == '1' and rate_refusal(rate_keys, t.user, now, cfg[3]) then
        reply = 'RATE_LIMITED'
      else
        reply = table.concat({ 'OK', t.user, t.status, position,
          wait_ms(position, estimate_rate(cfg[1], cfg[2])), t.iat, t.aat, t.exp }, '|')
      end
    end
  end
  out[i] = reply
end
rate_commit()
return out
