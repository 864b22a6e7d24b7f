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
-- Returns per token "OK|userId|status|position|waitMs|issuedAt|activatedAt|expiresAt|opensAt"
--      (a token in a pre-queue not yet shuffled, see lua/issue_tokens.lua, has no position,
--      and opensAt is bookingOpenAt; else opensAt is empty)
--      or "QUEUE_TOKEN_INVALID" (unknown, ended, or past its time)
--      or "RATE_LIMITED" (a live token whose user's userRequestsPerSecond is spent)
local now = now_ms()
local n = #ARGV / 2
local tokens = {}
for i = 1, n do tokens[i] = ARGV[2 * i - 1] end
local records = redis.call('HMGET', KEYS[3], unpack(tokens))
local rate_keys = { KEYS[4], KEYS[5] }
local cfg
local function settings()
  cfg = cfg or redis.call('HMGET', KEYS[1], 'measuredRate', 'admissionPerSecond',
    'userRequestsPerSecond', 'queueOrder', 'shuffledAt', 'bookingOpenAt', 'preQueueLast')
  return cfg
end
local out = {}
for i = 1, n do
  local raw = records[i]
  local t = raw and decode_token(raw)
  local reply = 'QUEUE_TOKEN_INVALID'
  if t and is_live(t, now) then
    local position, wait, opens = 0, 0, ''
    local rank = true
    if t.status == 'WAITING' then
      local c = settings()
      local rate = estimate_rate(c[1], c[2])
      if c[4] == 'SHUFFLE_AT_OPEN' and not c[5] and tonumber(t.iat) < tonumber(c[6]) then
        -- In the pre-queue: every pre-queue token's score is within its sequences, every
        -- later arrival's above them.
        rank = redis.call('ZSCORE', KEYS[2], tokens[i])
        local size = redis.call('ZCOUNT', KEYS[2], '-inf', c[7] or '+inf')
        position, opens = '', c[6]
        wait = math.max(0, tonumber(c[6]) - now) + wait_ms(math.ceil(size / 2), rate)
      else
        rank = redis.call('ZRANK', KEYS[2], tokens[i])
        position = rank and rank + 1 or 0
        wait = wait_ms(position, rate)
      end
    end
    if rank then
      if ARGV[2 * i] == '1' and rate_refusal(rate_keys, t.user, now, settings()[3]) then
        reply = 'RATE_LIMITED'
      else
        reply = table.concat({ 'OK', t.user, t.status, position, wait, t.iat, t.aat, t.exp,
          opens }, '|')
      end
    end
  end
  out[i] = reply
end
rate_commit()
return out
