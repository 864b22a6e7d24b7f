-- GET /api/v1/queue/tokens/me: one ACTIVE token's status, again and again. One wrk thread
-- (-t1).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.method = "GET"
wrk.path = "/api/v1/queue/tokens/me"
wrk.headers["Queue-Token"] = os.getenv("BENCH_STATUS_TOKEN")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
done = report
