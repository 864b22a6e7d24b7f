-- GET /health: no I/O per request, the ceiling every other endpoint is measured against.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.method = "GET"
wrk.path = "/health"
done = report
