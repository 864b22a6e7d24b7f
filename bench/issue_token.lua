-- POST /api/v1/queue/tokens with a new user per request (users BENCH_FIRST_USER upwards), so
-- every request is a real issuance, not a 409, each with that user's identity (line n of
-- BENCH_AUTH_FILE is user n's). With BENCH_LAST_USER, the thread stops once that user's
-- request is sent (the requests still in flight then may or may not be answered). Run with
-- one wrk thread (-t1): the counter is per thread.
--
-- The identities are read from the file as the requests need them, not loaded into a table:
-- a million strings in LuaJIT's heap would be walked by every garbage collection and cost wrk
-- the CPU the server is measured with.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local schedule = os.getenv("BENCH_SCHEDULE")
local user = tonumber(os.getenv("BENCH_FIRST_USER")) - 1
local last = tonumber(os.getenv("BENCH_LAST_USER"))
wrk.method = "POST"
wrk.path = "/api/v1/queue/tokens"
wrk.headers["Content-Type"] = "application/json"
local identities = assert(io.open(os.getenv("BENCH_AUTH_FILE")))
for _ = 1, user do identities:read("*l") end
request = function()
  if last and user >= last then
    -- (wrk may ask for a few more requests after the stop: they repeat the last user's)
    wrk.thread:stop()
  else
    user = user + 1
    local identity = identities:read("*l")
    if not identity then error("BENCH_AUTH_FILE has no identity for user " .. user) end
    wrk.headers["Authorization"] = "Bearer " .. identity
  end
  return wrk.format(nil, nil, nil,
    '{"userId":' .. user .. ',"scheduleId":' .. schedule .. '}')
end
done = report
