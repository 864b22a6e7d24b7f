-- Per-user request rates, shared by the scripts that count a request (the loader prepends this
-- file to each script that declares `-- uses: lib/rate.lua`). A user may make
-- `userRequestsPerSecond` requests per second on a schedule, in bursts of as many (GCRA: the
-- user's state is the time its next request is due, never more than a second ahead of now).
-- Counting happens in the script the request runs anyway, so the limit adds no round trip and
-- holds across instances.
--
-- The due times live in two hashes, one per alternate wall-clock second (field `gen` names
-- the second a hash is for). A due time written in second g has passed by second g + 2, so a
-- hash found holding an older second is dropped whole (UNLINK) and nothing lingers per user:
-- an idle schedule keeps at most the last two seconds' callers.
--
-- Callers pass `keys` = { {s:S}:rate:0, {s:S}:rate:1 }, taken from their KEYS.

local RATE_GEN_MS = 1000
local rate_hashes_now -- this run's { cur = key, prev = key or false }, found on first use

local function rate_hashes(keys, now)
  if rate_hashes_now then return rate_hashes_now end
  local g = math.floor(now / RATE_GEN_MS)
  local cur, prev = keys[g % 2 + 1], keys[(g + 1) % 2 + 1]
  if tonumber(redis.call('HGET', cur, 'gen')) ~= g then
    -- A command that may grow memory comes first: Redis past maxmemory refuses it with OOM
    -- while the script has written nothing, so the request fails whole. After a first write
    -- (such as the UNLINK) Redis lets a script run on, as it cannot stop one half-way.
    redis.call('HSET', cur, 'gen', g)
    redis.call('UNLINK', cur)
    redis.call('HSET', cur, 'gen', g)
  end
  if tonumber(redis.call('HGET', prev, 'gen')) ~= g - 1 then prev = false end
  rate_hashes_now = { cur = cur, prev = prev }
  return rate_hashes_now
end

-- 'RATE_LIMITED' if `user` has no request left now at `per_second` (the caller may retry
-- within a second), else nil, and the request is counted.
local function rate_refusal(keys, user, now, per_second)
  local h = rate_hashes(keys, now)
  local due = tonumber(redis.call('HGET', h.cur, user))
  if not due and h.prev then due = tonumber(redis.call('HGET', h.prev, user)) end
  local interval = 1000 / (tonumber(per_second) or 50)
  due = math.max(due or now, now)
  -- A full burst spends the next second: the last request of it is due 1000 - interval ms on.
  if due - now > 1000 - interval then return 'RATE_LIMITED' end
  redis.call('HSET', h.cur, user, string.format('%.3f', due + interval))
  return nil
end

-- Drops the hashes of seconds that have passed (for the background tick, so a schedule nobody
-- calls keeps none).
local function rate_sweep(keys, now)
  local g = math.floor(now / RATE_GEN_MS)
  for _, key in ipairs(keys) do
    local gen = tonumber(redis.call('HGET', key, 'gen'))
    if gen and gen < g - 1 then redis.call('UNLINK', key) end
  end
end
