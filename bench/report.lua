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
