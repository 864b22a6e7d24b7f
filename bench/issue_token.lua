-- POST /api/v1/queue/tokens with a new user per request (users BENCH_FIRST_USER upwards), so
-- every request is a real issuance, not a 409, each with that user's identity (line n of
-- BENCH_AUTH_FILE is user n's). With BENCH_LAST_USER, the thread stops once that user's
-- request is sent (the requests still in flight then may or may not be answered). Run with
-- one wrk thread (-t1): the counter is per thread.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local schedule = os.getenv("BENCH_SCHEDULE")
local user = tonumber(os.getenv("BENCH_FIRST_USER")) - 1
local last = tonumber(os.getenv("BENCH_LAST_USER"))
wrk.method = "POST"
wrk.path = "/api/v1/queue/tokens"
wrk.headers["Content-Type"] = "application/json"
local identities = {}
for line in io.lines(os.getenv("BENCH_AUTH_FILE")) do identities[#identities + 1] = line end
request = function()
  user = user + 1
  if last and user > last then
    wrk.thread:stop()
    user = last
  end
  local identity = identities[user]
  if not identity then error("BENCH_AUTH_FILE has no identity for user " .. user) end
  wrk.headers["Authorization"] = "Bearer " .. identity
  return wrk.format(nil, nil, nil,
    '{"userId":' .. user .. ',"scheduleId":' .. schedule .. '}')
end
done = report
