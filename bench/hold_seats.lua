-- POST /api/v1/reservations: one seat per request, so every request is a real hold until the
-- seats run out (later requests are refused, counted as non-2xx). One wrk thread (-t1).
--
-- Who holds: one user whose seat limit is lifted (BENCH_HOLD_USER, BENCH_HOLD_TOKEN,
-- BENCH_AUTH), or with BENCH_CROWD_FILE a different user per request, line n of that file
-- ("userId identity token", bench/crowd.rs) making request n. Which seat: the next seat id
-- from BENCH_FIRST_SEAT upwards, or with BENCH_QUANTITY=n the n best available seats.
--
-- The crowd's lines are read from the file as the requests need them, not loaded into a
-- table (see issue_token.lua).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
local schedule = os.getenv("BENCH_HOLD_SCHEDULE")
local user = os.getenv("BENCH_HOLD_USER")
local seat = tonumber(os.getenv("BENCH_FIRST_SEAT")) - 1
local quantity = os.getenv("BENCH_QUANTITY")
local crowd = os.getenv("BENCH_CROWD_FILE")
crowd = crowd and assert(io.open(crowd))
wrk.method = "POST"
wrk.path = "/api/v1/reservations"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Queue-Token"] = os.getenv("BENCH_HOLD_TOKEN")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
request = function()
  if crowd then
    local line = crowd:read("*l")
    if not line then error("BENCH_CROWD_FILE has too few users for this run") end
    local identity, token
    user, identity, token = line:match("^(%d+) (%S+) (%S+)$")
    wrk.headers["Authorization"] = "Bearer " .. identity
    wrk.headers["Queue-Token"] = token
  end
  local what
  if quantity then
    what = '"quantity":' .. quantity
  else
    seat = seat + 1
    what = '"seatIds":[' .. seat .. ']'
  end
  return wrk.format(nil, nil, nil,
    '{"scheduleId":' .. schedule .. ',' .. what .. ',"userId":' .. user .. '}')
end
done = report
