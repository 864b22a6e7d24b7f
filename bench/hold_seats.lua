-- POST /api/v1/reservations: one new seat per request (seat ids BENCH_FIRST_SEAT upwards) for
-- one user whose seat limit is lifted, so every request is a real hold until the seats run
-- out; later requests are refused (counted as non-2xx). One wrk thread (-t1).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local schedule = os.getenv("BENCH_HOLD_SCHEDULE")
local user = os.getenv("BENCH_HOLD_USER")
local seat = tonumber(os.getenv("BENCH_FIRST_SEAT")) - 1
wrk.method = "POST"
wrk.path = "/api/v1/reservations"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Queue-Token"] = os.getenv("BENCH_HOLD_TOKEN")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
request = function()
  seat = seat + 1
  return wrk.format(nil, nil, nil,
    '{"scheduleId":' .. schedule .. ',"seatIds":[' .. seat .. '],"userId":' .. user .. '}')
end
done = report
