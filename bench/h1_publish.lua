-- wrk script for scenario H1 (bench/run.sh): one small JSON event per
-- HTTP/1.1 keep-alive request, no pipelining (one request in flight per
-- connection). The path comes from the URL on wrk's command line:
-- scopecast POST /api/emit, nchan and uWS POST /pub/ch1.
-- H1_BODY overrides the body; the same bytes go to every server (scopecast
-- reads it as an emit to scope ch1, the peers publish it as the message).
wrk.method = "POST"
wrk.body = os.getenv("H1_BODY") or '{"scope":"ch1","data":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"

-- one machine-readable line for run.sh; latencies in microseconds. wrk
-- counts as status errors the answers with a status above 399, and as
-- socket errors connect/read/write failures and timeouts (a read error is
-- also a connection closed by the server before its answer was complete)
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK requests=%d duration_us=%d bytes=%d status_errors=%d " ..
      "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d " ..
      "p50_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.0f\n",
      summary.requests, summary.duration, summary.bytes, e.status,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
