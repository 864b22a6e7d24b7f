-- Shared by the wrk scripts: one machine-readable line per run, parsed by bench/run.sh.
-- Latencies are in microseconds; "bad" counts non-2xx/3xx responses and socket errors.
function report(summary, latency)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50=%d p99=%d p999=%d bad=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.status + e.connect + e.read + e.write + e.timeout))
end

-- With BENCH_RATE set, requests leave on a fixed schedule of that many a second (the n-th
-- at start + n / rate, on whichever connection is free), so latency is measured at a known
-- load rather than at saturation. wrk calls delay() before each request and waits that many
-- whole milliseconds; the schedule is absolute, so rounding never accumulates.
local rate = tonumber(os.getenv("BENCH_RATE"))
if rate then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } timespec;
    int clock_gettime(int clk_id, timespec *tp);
  ]]
  local ts = ffi.new("timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local start, sent = nil, 0
  function delay()
    local t = now_ms()
    start = start or t
    sent = sent + 1
    return math.max(0, start + sent * 1000 / rate - t)
  end
end
