-- uses: lib/queue.lua
-- Moves a schedule's queue tokens in Redis forwards to what MySQL already holds, when Redis
-- came back older than MySQL (src/reconcile.rs): a live token Redis lost is back in the
-- queue (unless its user has another live token), an admitted one is ACTIVE, an ended one
-- has ended. Nothing is appended to the outbox (MySQL has these records already).
-- A token Redis lost is one above the sequence Redis had reached: one at or below it that
-- Redis lacks left on purpose (ended, and kept long enough), even if MySQL has not seen it
-- end yet.
--
-- KEYS: tokens, waiting, active, users, ended
-- ARGV[1]: the token sequence Redis had reached (before it was raised to MySQL's); then
-- token (sequence), MySQL's record (in the format of lib/queue.lua), …
--
-- A token Redis has under the same sequence for another user is a conflict: left as it is
-- and counted.
--
-- Returns { restored, admitted, ended, conflicts }.
local k = { tokens = KEYS[1], waiting = KEYS[2], active = KEYS[3], users = KEYS[4],
  ended = KEYS[5] }
local LIVE = { WAITING = true, ACTIVE = true }
local reached = tonumber(ARGV[1])
local restored, admitted, ended, conflicts = 0, 0, 0, 0

for i = 2, #ARGV, 2 do
  local token, stored = ARGV[i], ARGV[i + 1]
  local m = decode_token(stored)
  local raw = redis.call('HGET', k.tokens, token)
  local t = raw and decode_token(raw) or nil
  if t and t.user ~= m.user then
    conflicts = conflicts + 1
  elseif LIVE[m.status] and t == nil and tonumber(token) > reached then
    if not redis.call('HGET', k.users, m.user) then
      if m.status == 'WAITING' then
        redis.call('ZADD', k.waiting, token, token)
      else
        redis.call('ZADD', k.active, tonumber(m.exp) or 0, token)
      end
      redis.call('HSET', k.users, m.user, token)
      redis.call('HSET', k.tokens, token, stored)
      restored = restored + 1
    end
  elseif m.status == 'ACTIVE' and t and t.status == 'WAITING' then
    redis.call('ZREM', k.waiting, token)
    redis.call('ZADD', k.active, tonumber(m.exp) or 0, token)
    redis.call('HSET', k.tokens, token, stored)
    admitted = admitted + 1
  elseif not LIVE[m.status] and t and LIVE[t.status] then
    redis.call('ZREM', k.waiting, token)
    redis.call('ZREM', k.active, token)
    if redis.call('HGET', k.users, t.user) == token then
      redis.call('HDEL', k.users, t.user)
    end
    redis.call('ZADD', k.ended, tonumber(m.fin) or 0, token)
    redis.call('HSET', k.tokens, token, stored)
    ended = ended + 1
  end
end
return { restored, admitted, ended, conflicts }
