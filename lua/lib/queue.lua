-- Helpers shared by the queue scripts. The loader (src/redis/scripts/mod.rs) prepends this file to
-- each script that declares `-- uses: lib/queue.lua`, so every script stays one atomic unit.
--
-- A token is named by its arrival sequence in the schedule (an integer: compact as a hash field
-- and a sorted-set member). Its record lives in the schedule's `tokens` hash as
--   "userId|status|seq|issuedAt|activatedAt|expiresAt|endedAt"   (times in ms, empty when unset)
-- and every change of it is appended, whole, to the schedule's outbox stream: one entry per
-- script run, `type tokens` and `rows`: token and record on alternate lines (one field, which
-- costs Redis far less to write than a field per token). The flusher upserts the latest
-- state, so a replayed or reordered entry cannot move a token backwards.

local DAY_MS = 24 * 3600 * 1000

local function decode_token(raw)
  local u, st, seq, iat, aat, exp, fin =
    string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return { user = u, status = st, seq = seq, iat = iat, aat = aat, exp = exp, fin = fin }
end

local function encode_token(t)
  return table.concat({ t.user, t.status, t.seq, t.iat, t.aat, t.exp, t.fin }, '|')
end

-- Records changed by this run, written by publish_tokens: token -> record, in first-change order.
local changed, changed_order = {}, {}

-- Stages a token's new record, encoded.
local function save_token_record(token, raw)
  if not changed[token] then changed_order[#changed_order + 1] = token end
  changed[token] = raw
end

local function save_token(token, t)
  save_token_record(token, encode_token(t))
end

-- The record of a new token (all arguments strings), built without a table: issuance makes
-- one per request, and a table costs a script more than the string.
local function new_token_record(user, status, seq, issued_at, activated_at, expires_at)
  return user .. '|' .. status .. '|' .. seq .. '|' .. issued_at .. '|' .. activated_at .. '|'
    .. expires_at .. '|'
end

-- Tokens per outbox entry (and per HSET): keeps each call far below Lua's unpack limit.
local PUBLISH_CHUNK = 500

-- Stores every changed record and appends them to the outbox, PUBLISH_CHUNK per entry.
local function publish_tokens(k)
  local pairs_ = {}
  for i, token in ipairs(changed_order) do
    pairs_[#pairs_ + 1] = token
    pairs_[#pairs_ + 1] = changed[token]
    if i % PUBLISH_CHUNK == 0 or i == #changed_order then
      redis.call('HSET', k.tokens, unpack(pairs_))
      redis.call('XADD', k.outbox, '*', 'type', 'tokens', 'rows', table.concat(pairs_, '\n'))
      pairs_ = {}
    end
  end
end

-- Ends a live token (EXPIRED): frees its queue or active slot and the user's live marker.
local function end_token(k, token, t, now, status)
  redis.call('ZREM', k.active, token)
  redis.call('ZREM', k.waiting, token)
  if redis.call('HGET', k.users, t.user) == token then
    redis.call('HDEL', k.users, t.user)
  end
  t.status = status
  t.fin = tostring(now)
  redis.call('ZADD', k.ended, now, token)
  save_token(token, t)
end

-- True while the token is WAITING (younger than a day) or ACTIVE (before its expiry).
local function is_live(t, now)
  if t.status == 'WAITING' then return now < tonumber(t.iat) + DAY_MS end
  if t.status == 'ACTIVE' then return now < tonumber(t.exp) end
  return false
end

-- Why `token` (of the schedule whose `tokens` hash is `tokens_key`) may not act for `user`
-- now, as a refusal code, or nil if it may: it must be their live ACTIVE token. `seen`
-- keeps the records a batch read, for scripts that change no token before their last check.
local function token_refusal(seen, tokens_key, token, user, now)
  local t = seen[token]
  if t == nil then
    local raw = redis.call('HGET', tokens_key, token)
    t = raw and decode_token(raw) or false
    seen[token] = t
  end
  if not t then return 'TOKEN_NOT_HERE' end
  if not is_live(t, now) then return 'QUEUE_TOKEN_INVALID' end
  if t.status ~= 'ACTIVE' then return 'QUEUE_TOKEN_NOT_ACTIVE' end
  if t.user ~= user then return 'FORBIDDEN' end
  return nil
end

-- Reads the records of `tokens` (repeats allowed) into `seen` with one command, for a batch
-- whose requests token_refusal then checks.
local function token_prefetch(seen, tokens_key, tokens)
  local raws = redis.call('HMGET', tokens_key, unpack(tokens))
  for i, token in ipairs(tokens) do
    if seen[token] == nil then seen[token] = raws[i] and decode_token(raws[i]) or false end
  end
end

-- Refusals of who is asking (401 and 403: the token, or another user's token or record) and
-- of how often (429). An Idempotency-Key never keeps them as its outcome, so a repeat is
-- evaluated afresh and nobody can store a refusal under another caller's key.
local CALLER_REFUSALS = { TOKEN_NOT_HERE = true, QUEUE_TOKEN_INVALID = true,
                          QUEUE_TOKEN_NOT_ACTIVE = true, FORBIDDEN = true, RATE_LIMITED = true }

local function keeps_outcome(code)
  return not CALLER_REFUSALS[code]
end

-- Admissions so far in the current wall-clock second, shared by every caller. On a new second
-- the finished one is folded into the measured admission rate (cfg field `measuredRate`, read
-- by wait_ms) if anyone was waiting in it; `demand` marks the current second so.
local function admissions_this_second(cfg, stats, now, demand)
  local window = math.floor(now / 1000)
  local s = redis.call('HMGET', stats, 'window', 'count', 'demand')
  local count = tonumber(s[2]) or 0
  if tonumber(s[1]) ~= window then
    if s[3] == '1' then
      local prev = tonumber(redis.call('HGET', cfg, 'measuredRate'))
      local measured = prev and (0.7 * prev + 0.3 * count) or count
      redis.call('HSET', cfg, 'measuredRate', tostring(measured))
    end
    count = 0
    redis.call('HSET', stats, 'window', window, 'count', 0, 'demand', demand and 1 or 0)
  elseif demand and s[3] ~= '1' then
    redis.call('HSET', stats, 'demand', 1)
  end
  return count
end

local function count_admissions(stats, n)
  redis.call('HINCRBY', stats, 'count', n)
  redis.call('HINCRBY', stats, 'admitted', n)
end

-- Admissions a second to estimate waits with: the measured rate, or the configured one
-- before anything was measured (both as stored in cfg).
local function estimate_rate(measured_rate, configured_rate)
  local rate = tonumber(measured_rate)
  if not rate or rate < 0.01 then rate = tonumber(configured_rate) end
  return rate
end

-- Milliseconds until a WAITING token at `position` is admitted at `rate` (estimate_rate) a
-- second; 0 once ACTIVE. (seatrush derives the minutes and the advised poll interval.)
local function wait_ms(position, rate)
  if position == 0 then return 0 end
  return math.ceil(position * 1000 / rate)
end
