-- POST /api/v1/payments: pays the hold run's reservations in the order they were made (ids
-- are scheduleId * 2^32 + 1, 2, …), one per request, so every request is a real payment
-- while holds last; later requests are refused (counted as non-2xx). One wrk thread (-t1).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local first = tonumber(os.getenv("BENCH_HOLD_SCHEDULE")) * 4294967296
local user = os.getenv("BENCH_HOLD_USER")
local n = 0
wrk.method = "POST"
wrk.path = "/api/v1/payments"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Queue-Token"] = os.getenv("BENCH_HOLD_TOKEN")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"reservationId":%.0f,"paymentMethod":"BALANCE","userId":%s}', first + n, user))
end
done = report
