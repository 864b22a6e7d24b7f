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
-- This run's hashes, found on first use: the current second's (`cur`), and the previous
-- second's (`prev`) while it is known to be that second's (nil: not read yet; false: stale).
local rate_cur, rate_prev

-- This run's due times (ms), read from the hashes on first use, and the users whose due time
-- it moved, in first-move order: rate_commit writes them all with one command.
local rate_due, rate_moved, rate_is_moved = {}, {}, {}

-- Reads the due times of `users` (repeats allowed), with the hashes' generations, in at most
-- two commands: a script that checks a batch of requests calls it once for all of them.
local function rate_prefetch(keys, users, now)
  local g = math.floor(now / RATE_GEN_MS)
  local fresh = not rate_cur
  if fresh then rate_cur, rate_prev = keys[g % 2 + 1], nil end
  local cur = redis.call('HMGET', rate_cur, 'gen', unpack(users))
  if fresh then
    -- The run's first write, and a command that may grow memory: Redis past maxmemory
    -- refuses it with OOM while the script has written nothing, so the request fails whole.
    -- After a first write (even one that frees memory, such as SREM or UNLINK) Redis lets a
    -- script run on, as it cannot stop one half-way. Every script that counts requests
    -- checks the rate before it changes anything.
    redis.call('HSET', rate_cur, 'gen', g)
    if tonumber(cur[1]) ~= g then
      -- A hash of an older second: start this second's.
      redis.call('UNLINK', rate_cur)
      redis.call('HSET', rate_cur, 'gen', g)
      cur = {}
    end
  end
  local missing = {}
  for i, user in ipairs(users) do
    if rate_due[user] == nil then
      if cur[i + 1] then rate_due[user] = tonumber(cur[i + 1]) / 1000
      elseif rate_prev ~= false then missing[#missing + 1] = user
      else rate_due[user] = false end
    end
  end
  if #missing > 0 then
    local key = keys[(g + 1) % 2 + 1]
    local prev = redis.call('HMGET', key, 'gen', unpack(missing))
    if rate_prev == nil then rate_prev = tonumber(prev[1]) == g - 1 and key or false end
    for i, user in ipairs(missing) do
      rate_due[user] = rate_prev and prev[i + 1] and tonumber(prev[i + 1]) / 1000 or false
    end
  end
end

-- The users the running script will check (rate_expect), read all together by the first
-- check that must read (none is read before it).
local rate_expected

-- Declares the users of a batch whose requests the script checks one at a time: the first
-- rate_refusal that must read a due time reads all of theirs with rate_prefetch.
local function rate_expect(users)
  rate_expected = users
end

-- 'RATE_LIMITED' if `user` has no request left now at `per_second` (the caller may retry
-- within a second), else nil, and the request is counted (kept by rate_commit).
local function rate_refusal(keys, user, now, per_second)
  local due = rate_due[user]
  if due == nil then
    rate_prefetch(keys, rate_expected or { user }, now)
    rate_expected = nil
    if rate_due[user] == nil then rate_prefetch(keys, { user }, now) end
    due = rate_due[user]
  end
  local interval = 1000 / (tonumber(per_second) or 50)
  due = math.max(due or now, now)
  -- A full burst spends the next second: the last request of it is due 1000 - interval ms on.
  if due - now > 1000 - interval then return 'RATE_LIMITED' end
  if not rate_is_moved[user] then
    rate_is_moved[user] = true
    rate_moved[#rate_moved + 1] = user
  end
  rate_due[user] = due + interval
  return nil
end

-- Stores the due times this run moved, in microseconds (integers format fast), in one
-- command. Every script that calls rate_refusal calls this before it returns.
local function rate_commit()
  if #rate_moved == 0 then return end
  local fields = {}
  for _, user in ipairs(rate_moved) do
    fields[#fields + 1] = user
    fields[#fields + 1] = string.format('%d', rate_due[user] * 1000)
  end
  redis.call('HSET', rate_cur, unpack(fields))
  rate_due, rate_moved, rate_is_moved = {}, {}, {}
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
