-- POST /api/v1/queue/tokens with a new user per request (users BENCH_FIRST_USER upwards), so
-- every request is a real issuance, not a 409. Run with one wrk thread (-t1): the counter is
-- per thread.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local schedule = os.getenv("BENCH_SCHEDULE")
local user = tonumber(os.getenv("BENCH_FIRST_USER")) - 1
wrk.method = "POST"
wrk.path = "/api/v1/queue/tokens"
wrk.headers["Content-Type"] = "application/json"
request = function()
  user = user + 1
  return wrk.format(nil, nil, nil,
    '{"userId":' .. user .. ',"scheduleId":' .. schedule .. '}')
end
done = report
