-- GET …/schedules/{id}/seats with an ACTIVE token of that schedule; with
-- BENCH_IF_NONE_MATCH, naming the tag the client has (a 304 while it is current).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.method = "GET"
wrk.path = "/api/v1/concerts/" .. os.getenv("BENCH_CONCERT") .. "/schedules/"
  .. os.getenv("BENCH_LIST_SCHEDULE") .. "/seats"
wrk.headers["Queue-Token"] = os.getenv("BENCH_LIST_TOKEN")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
wrk.headers["If-None-Match"] = os.getenv("BENCH_IF_NONE_MATCH")
done = report
