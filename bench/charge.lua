-- POST /api/v1/users/{userId}/balance/charge: 1 KRW per request for one user, so the balance
-- cap is never reached. One wrk thread (-t1).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.path = "/api/v1/users/" .. os.getenv("BENCH_CHARGE_USER") .. "/balance/charge"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Queue-Token"] = os.getenv("BENCH_CHARGE_TOKEN")
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
wrk.body = '{"amount":1}'
done = report
