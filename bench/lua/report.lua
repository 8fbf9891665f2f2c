-- Prints wrk's summary as one JSON line (prefixed BENCHJSON) for bench/run.
-- No request()/response() hooks: defining them would make wrk call Lua on
-- every request and slow the client down.
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,' ..
      '"err_connect":%.0f,"err_read":%.0f,"err_write":%.0f,"err_status":%.0f,' ..
      '"err_timeout":%.0f,"lat_p50_us":%.0f,"lat_p90_us":%.0f,"lat_p99_us":%.0f,' ..
      '"lat_mean_us":%.1f,"lat_max_us":%.0f}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.mean, latency.max))
end
